package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	Cancel(ctx context.Context, jobid int64) (bool, error)
	// ParseTime reads text as the server's timestamptz input does and
	// returns its Unix time in seconds (+Inf for infinity).
	ParseTime(ctx context.Context, text string) (float64, error)
	Close()
}

// submission is what lantern.async_task is called with; Timeout is
// interval text ("" for the server's lantern_async.task_timeout). The
// run_after is At (timestamptz text) or the server's clock + AtIn
// (interval text); neither: now.
type submission struct {
	Query, Name, Timeout string
	At, AtIn             string
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
	// hasDue: whether lantern.task_owners has due (0.5.0 on); nil until
	// the first read of task rows asks.
	hasDue *bool
}

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

func (s *pgStore) Submit(ctx context.Context, sub submission) (int64, error) {
	var name *string
	if sub.Name != "" {
		name = &sub.Name
	}
	if sub.At != "" || sub.AtIn != "" {
		return s.submitAt(ctx, sub, name)
	}
	var row pgx.Row
	switch {
	case sub.Timeout != "":
		row = s.conn.QueryRow(ctx, "SELECT lantern.async_task($1, $2, $3::interval)", sub.Query, name, sub.Timeout)
	case name != nil:
		row = s.conn.QueryRow(ctx, "SELECT lantern.async_task($1, $2)", sub.Query, name)
	default:
		row = s.conn.QueryRow(ctx, "SELECT lantern.async_task($1)", sub.Query)
	}
	var jobid int64
	return jobid, wrapDB("", row.Scan(&jobid))
}

// submitAt passes run_after in named notation, which only 0.5.0 on
// accepts: an older lantern.async_task does not match (42883), and the
// error then says to update the extension.
func (s *pgStore) submitAt(ctx context.Context, sub submission, name *string) (int64, error) {
	runAfter, at := "$4::pg_catalog.timestamptz", sub.At
	if sub.AtIn != "" {
		runAfter, at = "pg_catalog.clock_timestamp() + $4::pg_catalog.interval", sub.AtIn
	}
	var timeout *string
	if sub.Timeout != "" {
		timeout = &sub.Timeout
	}
	var jobid int64
	err := s.conn.QueryRow(ctx, `SELECT lantern.async_task($1, job_name => $2,
		timeout => $3::pg_catalog.interval, run_after => `+runAfter+`)`,
		sub.Query, name, timeout, at).Scan(&jobid)
	return jobid, wrapDB("", withoutRunAfterHint(err))
}

// withoutRunAfterHint gives "no such function" (42883, from a
// lantern.async_task older than 0.5.0, which has no run_after) the hint to
// update the extension.
func withoutRunAfterHint(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42883" {
		return err
	}
	old := *pe
	old.Hint = "--at needs lantern_async 0.5.0 or later (lantern.async_task with run_after). " +
		"To update it, as the extension's owner: ALTER EXTENSION lantern_async UPDATE;"
	return &old
}

func (s *pgStore) ParseTime(ctx context.Context, text string) (float64, error) {
	var epoch float64
	err := s.conn.QueryRow(ctx, "SELECT extract(epoch FROM $1::pg_catalog.timestamptz)::pg_catalog.float8", text).Scan(&epoch)
	return epoch, wrapDB("", err)
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
// clock come from lantern.task_owners where it has due (0.5.0 on).
func taskRowSQL(hasDue bool) string {
	due, join := "NULL::pg_catalog.timestamptz, NULL::pg_catalog.float8", ""
	if hasDue {
		due = "o.due, extract(epoch FROM o.due - pg_catalog.clock_timestamp())::pg_catalog.float8"
		join = " LEFT JOIN lantern.task_owners o ON o.jobid = t.jobid"
	}
	return `
SELECT t.jobid, t.query, t.pg_cron_job_name, t.job_name, t.username, t.started_at,
       extract(epoch FROM t.duration)::float8, t.status, t.error_message, e.sqlstate, ` + due + `
FROM lantern.tasks t LEFT JOIN lantern.task_errors e ON e.jobid = t.jobid` + join
}

const hasDueSQL = `
SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute a
               JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'lantern' AND c.relname = 'task_owners'
                 AND a.attname = 'due' AND NOT a.attisdropped)`

// taskRows is taskRowSQL for this server, which is asked once whether
// lantern.task_owners has due.
func (s *pgStore) taskRows(ctx context.Context) (string, error) {
	if s.hasDue == nil {
		var has bool
		if err := s.conn.QueryRow(ctx, hasDueSQL).Scan(&has); err != nil {
			return "", wrapDB("", err)
		}
		s.hasDue = &has
	}
	return taskRowSQL(*s.hasDue), nil
}

func scanTaskRow(row pgx.Row) (taskRow, error) {
	var r taskRow
	err := row.Scan(&r.JobID, &r.Query, &r.PgCronJobName, &r.JobName, &r.Username, &r.StartedAt,
		&r.DurationSeconds, &r.Status, &r.ErrorMessage, &r.SQLState, &r.Due, &r.dueIn)
	if deref(r.Status) != "pending" { // due is set only while pending
		r.Due, r.dueIn = nil, nil
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
