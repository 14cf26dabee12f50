package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// taskDetails is what show prints: the row, the tasks it depends on and
// its attempts (both empty, never nil: a task with none, or before 0.5.0).
type taskDetails struct {
	taskRow
	Dependencies []dependency `json:"dependencies"`
	Attempts     []attempt    `json:"attempts"`
}

// dependency is a task another waits for (lantern.task_dependencies), with
// its status; nil when the caller cannot see it (deleted since, say).
type dependency struct {
	JobID  int64   `json:"jobid"`
	Status *string `json:"status"`
}

// attempt is a row of lantern.task_attempts: one attempt of a task
// submitted with retries; SQLState and ErrorMessage nil: it succeeded.
type attempt struct {
	Attempt         int32     `json:"attempt"`
	StartedAt       time.Time `json:"started_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	SQLState        *string   `json:"sqlstate"`
	ErrorMessage    *string   `json:"error_message"`
}

const dependenciesSQL = `
SELECT d.depends_on, t.status FROM lantern.task_dependencies d
LEFT JOIN lantern.tasks t ON t.jobid = d.depends_on
WHERE d.jobid = $1 ORDER BY d.depends_on`

const attemptsSQL = `
SELECT a.attempt, a.started_at, extract(epoch FROM a.duration)::pg_catalog.float8, a.sqlstate, a.error_message
FROM lantern.task_attempts a WHERE a.jobid = $1 ORDER BY a.attempt`

// Details reads the row, the dependencies and the attempts in one
// read-only REPEATABLE READ transaction, so that they agree: an attempt
// that ends meanwhile is in the attempts and the status alike, or in
// neither.
func (s *pgStore) Details(ctx context.Context, jobid int64) (*taskDetails, error) {
	has, err := s.features(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := s.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, wrapDB("", err)
	}
	// Read only: nothing to commit.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// On the connection, the session tx is in: in its snapshot.
	row, err := s.Task(ctx, jobid)
	if row == nil || err != nil {
		return nil, err
	}
	d := &taskDetails{taskRow: *row, Dependencies: []dependency{}, Attempts: []attempt{}}
	if has.dependencies {
		rows, _ := tx.Query(ctx, dependenciesSQL, jobid)
		d.Dependencies, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (dependency, error) {
			var dep dependency
			return dep, r.Scan(&dep.JobID, &dep.Status)
		})
		if err != nil {
			return nil, wrapDB("", err)
		}
	}
	if has.attempts {
		rows, _ := tx.Query(ctx, attemptsSQL, jobid)
		d.Attempts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (attempt, error) {
			var a attempt
			return a, r.Scan(&a.Attempt, &a.StartedAt, &a.DurationSeconds, &a.SQLState, &a.ErrorMessage)
		})
		if err != nil {
			return nil, wrapDB("", err)
		}
	}
	return d, nil
}
