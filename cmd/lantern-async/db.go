package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// store is everything the commands ask the server; pgStore is the real one.
type store interface {
	Submit(ctx context.Context, s submission) (int64, error)
	// WaitTask calls lantern.wait_task(jobid, timeout): it returns when the
	// task has finished, cannot be seen, or timeout passed.
	WaitTask(ctx context.Context, jobid int64, timeout time.Duration) error
	// Snapshot reads the state of each task of jobids, in that order.
	Snapshot(ctx context.Context, jobids []int64) ([]taskState, error)
	List(ctx context.Context, statuses []string) ([]taskRow, error)
	// Task reads one row; nil when the caller cannot see it.
	Task(ctx context.Context, jobid int64) (*taskRow, error)
	// Details reads one row with its dependencies and attempts; nil when
	// the caller cannot see it.
	Details(ctx context.Context, jobid int64) (*taskDetails, error)
	Cancel(ctx context.Context, jobid int64) (bool, error)
	// ParseTime reads text as the server's timestamptz input does and
	// returns its Unix time in seconds (+Inf for infinity).
	ParseTime(ctx context.Context, text string) (float64, error)
	Close()
}

// submission is what lantern.async_task is called with; Timeout is
// interval text ("" for the server's lantern_async.task_timeout). The
// run_after is At (timestamptz text) or the server's clock + AtIn
// (interval text); neither: now. Retries is how many more attempts a
// transient failure may have, and After the jobids that must succeed
// first (depends_on); each is passed only when set (not 0, not empty).
type submission struct {
	Query, Name, Timeout string
	At, AtIn             string
	Retries              int
	After                []int64
}

// taskRow is a row of lantern.tasks with its SQLSTATE from lantern.task_errors.
type taskRow struct {
	JobID           int64     `json:"jobid"`
	Query           string    `json:"query"`
	PgCronJobName   *string   `json:"pg_cron_job_name"`
	JobName         *string   `json:"job_name"`
	Username        string    `json:"username"`
	StartedAt       time.Time `json:"started_at"`
	DurationSeconds *float64  `json:"duration_seconds"`
	Status          *string   `json:"status"`
	ErrorMessage    *string   `json:"error_message"`
	SQLState        *string   `json:"sqlstate"`
	// Due is when a pending task may start (lantern.task_owners.due: its
	// submit or its run_after); nil otherwise, or before 0.5.0.
	Due *time.Time `json:"due"`
	// dueIn is Due − the server's clock when it was read, in seconds.
	dueIn *float64
	// WaitsFor is, of a pending task with dependencies, those that have
	// not succeeded yet (lantern.task_dependencies); nil otherwise.
	WaitsFor []int64 `json:"waits_for"`
}

// taskState is what wait needs to know of a task at one moment.
type taskState struct {
	JobID        int64
	Visible      bool   // the caller can see its row
	Status       string // "" when NULL
	ErrorMessage string
	SQLState     string
	Duration     time.Duration // of a finished task
	Progress     *progress     // of a running task
}

// progress is a running task's row of lantern.task_progress.
type progress struct {
	Command, Phase string
	Percent        *float64 // nil when unknown
	Elapsed        time.Duration
}

type pgStore struct {
	conn *pgx.Conn
	// has: what of 0.5.0 this server's lantern_async has; nil until the
	// first read of task rows asks.
	has *features
}

// features is what of 0.5.0 a server's lantern_async has: due (run_after),
// dependencies (task_owners.depends and task_dependencies), and attempts
// (task_attempts). Before 0.5.0: none.
type features struct{ due, dependencies, attempts bool }

// connectStore connects with dsn, or with the libpq environment variables
// when dsn is empty.
func connectStore(ctx context.Context, dsn string) (store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, usagef("invalid connection settings: %v", err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "lantern-async"
	}
	// The statements below name the extension's objects in full; anything
	// else they call must be pg_catalog's. With the default search_path an
	// unqualified unnest(bigint[]) or cardinality(text[]) is an exact match
	// for a function a database owner plants in public, which then runs as
	// whoever runs the command (a superuser, often).
	cfg.RuntimeParams["search_path"] = "pg_catalog, pg_temp"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, wrapDB("cannot connect", err)
	}
	return &pgStore{conn: conn}, nil
}

func (s *pgStore) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.conn.Close(ctx)
}

// WaitTask is a CALL outside any transaction block, as wait_task requires.
func (s *pgStore) WaitTask(ctx context.Context, jobid int64, timeout time.Duration) error {
	_, err := s.conn.Exec(ctx, "CALL lantern.wait_task($1, $2::interval, NULL)",
		jobid, fmt.Sprintf("%d microseconds", timeout.Microseconds()))
	return wrapDB("", err)
}

const snapshotSQL = `
SELECT u.jobid, t.jobid IS NOT NULL, coalesce(t.status, ''), coalesce(t.error_message, ''),
       coalesce(e.sqlstate, ''), coalesce(extract(epoch FROM t.duration)::float8, 0),
       p.jobid IS NOT NULL, coalesce(p.command, ''), coalesce(p.phase, ''), p.percent::float8,
       coalesce(extract(epoch FROM p.elapsed)::float8, 0)
FROM unnest($1::bigint[]) WITH ORDINALITY AS u(jobid, n)
LEFT JOIN lantern.tasks t ON t.jobid = u.jobid
LEFT JOIN lantern.task_errors e ON e.jobid = u.jobid
LEFT JOIN lantern.task_progress p ON p.jobid = u.jobid
ORDER BY u.n`

func (s *pgStore) Snapshot(ctx context.Context, jobids []int64) ([]taskState, error) {
	rows, err := s.conn.Query(ctx, snapshotSQL, jobids)
	if err != nil {
		return nil, wrapDB("", err)
	}
	var out []taskState
	seen := map[int64]bool{} // a process in two progress views gives two rows
	for rows.Next() {
		var st taskState
		var running bool
		var duration, elapsed float64
		var p progress
		if err := rows.Scan(&st.JobID, &st.Visible, &st.Status, &st.ErrorMessage, &st.SQLState, &duration,
			&running, &p.Command, &p.Phase, &p.Percent, &elapsed); err != nil {
			rows.Close()
			return nil, wrapDB("", err)
		}
		if seen[st.JobID] {
			continue
		}
		seen[st.JobID] = true
		st.Duration = seconds(duration)
		if running {
			p.Elapsed = seconds(elapsed)
			st.Progress = &p
		}
		out = append(out, st)
	}
	return out, wrapDB("", rows.Err())
}

// taskRowSQL reads task rows; due and its distance from the server's
// clock come from lantern.task_owners where it has due (0.5.0 on), and
// the dependencies a pending task waits for from task_dependencies (only
// for a task whose owner row says it has some).
func taskRowSQL(has features) string {
	due, join := "NULL::pg_catalog.timestamptz, NULL::pg_catalog.float8", ""
	if has.due {
		due = "o.due, extract(epoch FROM o.due - pg_catalog.clock_timestamp())::pg_catalog.float8"
		join = " LEFT JOIN lantern.task_owners o ON o.jobid = t.jobid"
	}
	waits := "NULL::pg_catalog.int8[]"
	if has.due && has.dependencies {
		waits = `CASE WHEN o.depends AND t.status = 'pending' THEN ARRAY(
		SELECT d.depends_on FROM lantern.task_dependencies d LEFT JOIN lantern.tasks dt ON dt.jobid = d.depends_on
		WHERE d.jobid = t.jobid AND dt.status IS DISTINCT FROM 'succeeded' ORDER BY d.depends_on) END`
	}
	return `
SELECT t.jobid, t.query, t.pg_cron_job_name, t.job_name, t.username, t.started_at,
       extract(epoch FROM t.duration)::float8, t.status, t.error_message, e.sqlstate, ` + due + `,
       ` + waits + `
FROM lantern.tasks t LEFT JOIN lantern.task_errors e ON e.jobid = t.jobid` + join
}

const featuresSQL = `
WITH c AS (SELECT c.relname, a.attname FROM pg_catalog.pg_attribute a
           JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'lantern' AND NOT a.attisdropped
             AND c.relname IN ('task_owners', 'task_dependencies', 'task_attempts'))
SELECT EXISTS (SELECT FROM c WHERE relname = 'task_owners' AND attname = 'due'),
       EXISTS (SELECT FROM c WHERE relname = 'task_owners' AND attname = 'depends')
         AND EXISTS (SELECT FROM c WHERE relname = 'task_dependencies' AND attname = 'depends_on'),
       EXISTS (SELECT FROM c WHERE relname = 'task_attempts' AND attname = 'attempt')`

// features asks this server, once, what it has of 0.5.0.
func (s *pgStore) features(ctx context.Context) (features, error) {
	if s.has == nil {
		var has features
		if err := s.conn.QueryRow(ctx, featuresSQL).Scan(&has.due, &has.dependencies, &has.attempts); err != nil {
			return features{}, wrapDB("", err)
		}
		s.has = &has
	}
	return *s.has, nil
}

// taskRows is taskRowSQL for this server.
func (s *pgStore) taskRows(ctx context.Context) (string, error) {
	has, err := s.features(ctx)
	if err != nil {
		return "", err
	}
	return taskRowSQL(has), nil
}

func scanTaskRow(row pgx.Row) (taskRow, error) {
	var r taskRow
	err := row.Scan(&r.JobID, &r.Query, &r.PgCronJobName, &r.JobName, &r.Username, &r.StartedAt,
		&r.DurationSeconds, &r.Status, &r.ErrorMessage, &r.SQLState, &r.Due, &r.dueIn, &r.WaitsFor)
	if deref(r.Status) != "pending" { // due is set only while pending
		r.Due, r.dueIn = nil, nil
	}
	if len(r.WaitsFor) == 0 { // none left, or none: null
		r.WaitsFor = nil
	}
	return r, err
}

// List reads the tasks whose status is one of statuses (all when empty),
// in jobid order.
func (s *pgStore) List(ctx context.Context, statuses []string) ([]taskRow, error) {
	q, err := s.taskRows(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.conn.Query(ctx, q+`
		WHERE coalesce(cardinality($1::text[]), 0) = 0 OR t.status = ANY ($1::text[])
		ORDER BY t.jobid`, statuses)
	if err != nil {
		return nil, wrapDB("", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (taskRow, error) { return scanTaskRow(r) })
	return out, wrapDB("", err)
}

func (s *pgStore) Task(ctx context.Context, jobid int64) (*taskRow, error) {
	q, err := s.taskRows(ctx)
	if err != nil {
		return nil, err
	}
	r, err := scanTaskRow(s.conn.QueryRow(ctx, q+" WHERE t.jobid = $1", jobid))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapDB("", err)
	}
	return &r, nil
}

func (s *pgStore) Cancel(ctx context.Context, jobid int64) (bool, error) {
	var ok *bool
	if err := s.conn.QueryRow(ctx, "SELECT lantern.cancel_task($1)", jobid).Scan(&ok); err != nil {
		return false, wrapDB("", err)
	}
	return ok != nil && *ok, nil
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}
