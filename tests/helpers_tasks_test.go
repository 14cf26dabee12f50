package tests

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

// queryRower is what submit needs: a *pgx.Conn or a pgx.Tx.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// submit queues query with lantern.async_task(query) through conn (a
// connection or an open transaction) and returns the jobid.
func submit(t *testing.T, conn queryRower, query string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(ctx(t), "SELECT lantern.async_task($1)", query).Scan(&id),
		"async_task(%q)", query)
	return id
}

// submitNamed uses the two-argument form lantern.async_task(query, job_name).
func submitNamed(t *testing.T, conn *pgx.Conn, query, jobName string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(ctx(t), "SELECT lantern.async_task($1, $2)", query, jobName).Scan(&id),
		"async_task(%q, %q)", query, jobName)
	return id
}

// isFinal reports whether status is one a task never leaves.
func isFinal(status string) bool {
	return status == "succeeded" || status == "failed" || status == "canceled"
}

// waitTask waits until the task has a final status ('succeeded', 'failed'
// or 'canceled'; as seen through conn, i.e. subject to row-level security)
// and returns its status and error_message ("" when NULL).
func waitTask(t *testing.T, conn *pgx.Conn, jobid int64) (status, errMsg string) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("task %d to reach a final status", jobid), whileConnected(conn, func() (bool, string) {
		var st, em *string
		err := conn.QueryRow(context.Background(),
			"SELECT status, error_message FROM lantern.tasks WHERE jobid = $1", jobid).Scan(&st, &em)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, "no row visible"
		}
		if err != nil {
			return false, "query error: " + err.Error()
		}
		if isFinal(deref(st)) {
			status, errMsg = deref(st), deref(em)
			return true, ""
		}
		return false, fmt.Sprintf("status=%q error_message=%q", deref(st), deref(em))
	}))
	return status, errMsg
}

// requireSucceeded waits for each task and asserts it succeeded.
func requireSucceeded(t *testing.T, conn *pgx.Conn, jobids ...int64) {
	t.Helper()
	for _, jobid := range jobids {
		status, errMsg := waitTask(t, conn, jobid)
		require.Equal(t, "succeeded", status, "task %d error_message: %s", jobid, errMsg)
	}
}

// requireFailed waits for the task, asserts it failed and returns error_message.
func requireFailed(t *testing.T, conn *pgx.Conn, jobid int64) string {
	t.Helper()
	status, errMsg := waitTask(t, conn, jobid)
	require.Equal(t, "failed", status, "task %d", jobid)
	return errMsg
}

// requireFailedWithSQLState is requireFailed that also asserts the task's
// lantern.task_errors.sqlstate.
func requireFailedWithSQLState(t *testing.T, conn *pgx.Conn, jobid int64, sqlstate string) string {
	t.Helper()
	errMsg := requireFailed(t, conn, jobid)
	require.Equal(t, sqlstate, taskSQLState(t, jobid),
		"lantern.task_errors.sqlstate of task %d (error_message %q)", jobid, errMsg)
	return errMsg
}

// task is a row of lantern.tasks (nullable columns are pointers; duration in
// seconds).
type task struct {
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

const taskColumns = `jobid, query, pg_cron_job_name, job_name, username, started_at,
	extract(epoch FROM duration)::float8, status, error_message`

// getTask reads a row through conn (nil: a superuser connection).
func getTask(t *testing.T, conn *pgx.Conn, jobid int64) task {
	t.Helper()
	if conn == nil {
		conn = connect(t, superuser)
	}
	var r task
	err := conn.QueryRow(ctx(t), "SELECT "+taskColumns+" FROM lantern.tasks WHERE jobid = $1", jobid).Scan(
		&r.JobID, &r.Query, &r.PgCronJobName, &r.JobName, &r.Username, &r.StartedAt,
		&r.Duration, &r.Status, &r.ErrorMessage)
	require.NoError(t, err, "read task %d", jobid)
	return r
}

// taskSQLState returns lantern.task_errors.sqlstate for jobid ("" if no row).
func taskSQLState(t *testing.T, jobid int64) string {
	t.Helper()
	conn := connect(t, superuser)
	var s string
	err := conn.QueryRow(ctx(t), "SELECT sqlstate FROM lantern.task_errors WHERE jobid = $1", jobid).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	require.NoError(t, err)
	return s
}

// countTasks counts every row of lantern.tasks (su: a superuser connection).
func countTasks(t *testing.T, su *pgx.Conn) int {
	t.Helper()
	return queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks")
}

// statusesOf returns the statuses of ids (in the order of ids) from one
// snapshot.
func statusesOf(conn *pgx.Conn, ids []int64) ([]string, error) {
	return queryRows[string](conn, `
		SELECT coalesce(t.status, '<NULL>')
		FROM unnest($1::bigint[]) WITH ORDINALITY AS u(jobid, n)
		LEFT JOIN lantern.tasks t USING (jobid)
		ORDER BY u.n`, ids)
}

// statusesAndWorkers returns the statuses of ids and the number of worker
// processes.
func statusesAndWorkers(conn *pgx.Conn, ids []int64) ([]string, int, error) {
	st, err := statusesOf(conn, ids)
	if err != nil {
		return nil, 0, err
	}
	workers, err := countBackends(conn, backendWorker)
	return st, workers, err
}

// countStatus counts the occurrences of status s in statuses.
func countStatus(statuses []string, s string) int {
	n := 0
	for _, x := range statuses {
		if x == s {
			n++
		}
	}
	return n
}

// allFinal reports whether every status of statuses is final.
func allFinal(statuses []string) bool {
	for _, s := range statuses {
		if !isFinal(s) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Canceling tasks

// cancelTask calls lantern.cancel_task(jobid) through conn.
func cancelTask(conn *pgx.Conn, jobid int64) (*bool, error) {
	var ok *bool
	err := conn.QueryRow(context.Background(), "SELECT lantern.cancel_task($1)", jobid).Scan(&ok)
	return ok, err
}

// requireCancelTask asserts cancel_task(jobid) through conn returns want.
func requireCancelTask(t *testing.T, conn *pgx.Conn, jobid int64, want bool) {
	t.Helper()
	got, err := cancelTask(conn, jobid)
	require.NoError(t, err, "lantern.cancel_task(%d)", jobid)
	require.NotNil(t, got, "lantern.cancel_task(%d) returned NULL", jobid)
	require.Equal(t, want, *got, "lantern.cancel_task(%d)", jobid)
}

// requireCanceled waits for the task (through conn) and asserts the whole
// outcome of a task stopped by cancel_task (see requireCanceledRow).
func requireCanceled(t *testing.T, conn *pgx.Conn, jobid int64, wantSQLState string) task {
	t.Helper()
	status, msg := waitTask(t, conn, jobid)
	require.Equal(t, "canceled", status, "task %d (error_message %q)", jobid, msg)
	r := getTask(t, nil, jobid)
	requireCanceledRow(t, r, wantSQLState)
	return r
}

// requireCanceledRow asserts r is the row of a task stopped by cancel_task:
// status, message, duration and (when wantSQLState is not empty) the
// lantern.task_errors row.
func requireCanceledRow(t *testing.T, r task, wantSQLState string) {
	t.Helper()
	require.Equal(t, "canceled", deref(r.Status), "status of task %d", r.JobID)
	require.Equal(t, canceledMessage, deref(r.ErrorMessage), "error_message of canceled task %d", r.JobID)
	require.NotNil(t, r.Duration, "duration of canceled task %d", r.JobID)
	require.GreaterOrEqual(t, *r.Duration, 0.0, "duration of canceled task %d", r.JobID)
	if wantSQLState != "" {
		require.Equal(t, wantSQLState, taskSQLState(t, r.JobID), "lantern.task_errors.sqlstate of canceled task %d", r.JobID)
	}
}

// waitNoWorkers waits until no lantern_async worker is connected (a
// worker's statistics reach the cumulative views when it exits at the
// latest).
func waitNoWorkers(t *testing.T, su *pgx.Conn) {
	t.Helper()
	requirePoll(t, time.Minute, "no lantern_async worker left",
		rowsLeft(su, 0, "pg_stat_activity WHERE backend_type = $1", backendWorker))
}
