package testkit

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Tasks: submitting, waiting for an outcome, reading rows, canceling.

// QueryRower is what submit needs: a *pgx.Conn or a pgx.Tx.
type QueryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Submit queues query with lantern.async_task(query) through conn (a
// connection or an open transaction) and returns the jobid.
func Submit(t *testing.T, conn QueryRower, query string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(Ctx(t), "SELECT lantern.async_task($1)", query).Scan(&id),
		"async_task(%q)", query)
	return id
}

// SubmitNamed uses the two-argument form lantern.async_task(query, job_name).
func SubmitNamed(t *testing.T, conn *pgx.Conn, query, jobName string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(Ctx(t), "SELECT lantern.async_task($1, $2)", query, jobName).Scan(&id),
		"async_task(%q, %q)", query, jobName)
	return id
}

// IsFinal reports whether status is one a task never leaves.
func IsFinal(status string) bool {
	return status == "succeeded" || status == "failed" || status == "canceled"
}

// WaitTask waits until the task has a final status ('succeeded', 'failed'
// or 'canceled'; as seen through conn, i.e. subject to row-level security)
// and returns its status and error_message ("" when NULL).
func WaitTask(t *testing.T, conn *pgx.Conn, jobid int64) (status, errMsg string) {
	t.Helper()
	RequirePoll(t, WaitTimeout, fmt.Sprintf("task %d to reach a final status", jobid), WhileConnected(conn, func() (bool, string) {
		var st, em *string
		err := conn.QueryRow(context.Background(),
			"SELECT status, error_message FROM lantern.tasks WHERE jobid = $1", jobid).Scan(&st, &em)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, "no row visible"
		}
		if err != nil {
			return false, "query error: " + err.Error()
		}
		if IsFinal(Deref(st)) {
			status, errMsg = Deref(st), Deref(em)
			return true, ""
		}
		return false, fmt.Sprintf("status=%q error_message=%q", Deref(st), Deref(em))
	}))
	return status, errMsg
}

// RequireSucceeded waits for each task and asserts it succeeded.
func RequireSucceeded(t *testing.T, conn *pgx.Conn, jobids ...int64) {
	t.Helper()
	for _, jobid := range jobids {
		status, errMsg := WaitTask(t, conn, jobid)
		require.Equal(t, "succeeded", status, "task %d error_message: %s", jobid, errMsg)
	}
}

// RequireFailed waits for the task, asserts it failed and returns error_message.
func RequireFailed(t *testing.T, conn *pgx.Conn, jobid int64) string {
	t.Helper()
	status, errMsg := WaitTask(t, conn, jobid)
	require.Equal(t, "failed", status, "task %d", jobid)
	return errMsg
}

// RequireFailedWithSQLState is RequireFailed that also asserts the task's
// lantern.task_errors.sqlstate.
func RequireFailedWithSQLState(t *testing.T, conn *pgx.Conn, jobid int64, sqlstate string) string {
	t.Helper()
	errMsg := RequireFailed(t, conn, jobid)
	require.Equal(t, sqlstate, TaskSQLState(t, jobid),
		"lantern.task_errors.sqlstate of task %d (error_message %q)", jobid, errMsg)
	return errMsg
}

// Task is a row of lantern.tasks (nullable columns are pointers; duration in
// seconds).
type Task struct {
	JobID         int64
	Query         string
	PgCronJobName *string
	JobName       *string
	Username      string
	StartedAt     time.Time
	Duration      *float64
	Status        *string
	ErrorMessage  *string
}

const TaskColumns = `jobid, query, pg_cron_job_name, job_name, username, started_at,
	extract(epoch FROM duration)::float8, status, error_message`

// GetTask reads a row through conn (nil: a superuser connection).
func GetTask(t *testing.T, conn *pgx.Conn, jobid int64) Task {
	t.Helper()
	if conn == nil {
		conn = Connect(t, Superuser)
	}
	var r Task
	err := conn.QueryRow(Ctx(t), "SELECT "+TaskColumns+" FROM lantern.tasks WHERE jobid = $1", jobid).Scan(
		&r.JobID, &r.Query, &r.PgCronJobName, &r.JobName, &r.Username, &r.StartedAt,
		&r.Duration, &r.Status, &r.ErrorMessage)
	require.NoError(t, err, "read task %d", jobid)
	return r
}

// TaskSQLState returns lantern.task_errors.sqlstate for jobid ("" if no row).
func TaskSQLState(t *testing.T, jobid int64) string {
	t.Helper()
	conn := Connect(t, Superuser)
	var s string
	err := conn.QueryRow(Ctx(t), "SELECT sqlstate FROM lantern.task_errors WHERE jobid = $1", jobid).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	require.NoError(t, err)
	return s
}

// CountTasks counts every row of lantern.tasks (su: a superuser connection).
func CountTasks(t *testing.T, su *pgx.Conn) int {
	t.Helper()
	return QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks")
}

// StatusesOf returns the statuses of ids (in the order of ids) from one
// snapshot.
func StatusesOf(conn *pgx.Conn, ids []int64) ([]string, error) {
	return QueryRows[string](conn, `
		SELECT coalesce(t.status, '<NULL>')
		FROM unnest($1::bigint[]) WITH ORDINALITY AS u(jobid, n)
		LEFT JOIN lantern.tasks t USING (jobid)
		ORDER BY u.n`, ids)
}

// StatusesAndWorkers returns the statuses of ids and the number of worker
// processes.
func StatusesAndWorkers(conn *pgx.Conn, ids []int64) ([]string, int, error) {
	st, err := StatusesOf(conn, ids)
	if err != nil {
		return nil, 0, err
	}
	workers, err := CountBackends(conn, BackendWorker)
	return st, workers, err
}

// CountStatus counts the occurrences of status s in statuses.
func CountStatus(statuses []string, s string) int {
	n := 0
	for _, x := range statuses {
		if x == s {
			n++
		}
	}
	return n
}

// AllFinal reports whether every status of statuses is final.
func AllFinal(statuses []string) bool {
	for _, s := range statuses {
		if !IsFinal(s) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Canceling tasks

// CancelTask calls lantern.cancel_task(jobid) through conn.
func CancelTask(conn *pgx.Conn, jobid int64) (*bool, error) {
	var ok *bool
	err := conn.QueryRow(context.Background(), "SELECT lantern.cancel_task($1)", jobid).Scan(&ok)
	return ok, err
}

// RequireCancelTask asserts cancel_task(jobid) through conn returns want.
func RequireCancelTask(t *testing.T, conn *pgx.Conn, jobid int64, want bool) {
	t.Helper()
	got, err := CancelTask(conn, jobid)
	require.NoError(t, err, "lantern.cancel_task(%d)", jobid)
	require.NotNil(t, got, "lantern.cancel_task(%d) returned NULL", jobid)
	require.Equal(t, want, *got, "lantern.cancel_task(%d)", jobid)
}

// RequireCanceled waits for the task (through conn) and asserts the whole
// outcome of a task stopped by cancel_task (see RequireCanceledRow).
func RequireCanceled(t *testing.T, conn *pgx.Conn, jobid int64, wantSQLState string) Task {
	t.Helper()
	status, msg := WaitTask(t, conn, jobid)
	require.Equal(t, "canceled", status, "task %d (error_message %q)", jobid, msg)
	r := GetTask(t, nil, jobid)
	RequireCanceledRow(t, r, wantSQLState)
	return r
}

// RequireCanceledRow asserts r is the row of a task stopped by cancel_task:
// status, message, duration and (when wantSQLState is not empty) the
// lantern.task_errors row.
func RequireCanceledRow(t *testing.T, r Task, wantSQLState string) {
	t.Helper()
	require.Equal(t, "canceled", Deref(r.Status), "status of task %d", r.JobID)
	require.Equal(t, CanceledMessage, Deref(r.ErrorMessage), "error_message of canceled task %d", r.JobID)
	require.NotNil(t, r.Duration, "duration of canceled task %d", r.JobID)
	require.GreaterOrEqual(t, *r.Duration, 0.0, "duration of canceled task %d", r.JobID)
	if wantSQLState != "" {
		require.Equal(t, wantSQLState, TaskSQLState(t, r.JobID), "lantern.task_errors.sqlstate of canceled task %d", r.JobID)
	}
}

// WaitNoWorkers waits until no lantern_async worker is connected (a
// worker's statistics reach the cumulative views when it exits at the
// latest).
func WaitNoWorkers(t *testing.T, su *pgx.Conn) {
	t.Helper()
	RequirePoll(t, time.Minute, "no lantern_async worker left",
		RowsLeft(su, 0, "pg_stat_activity WHERE backend_type = $1", BackendWorker))
}
