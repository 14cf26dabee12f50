package testkit

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

const MsgTaskTimeout = "ERROR:  canceling task due to task timeout"

// PerTaskTimeoutMessage is taskTimeoutMessage for a task's own timeout.
func PerTaskTimeoutMessage(limit string) string {
	return MsgTaskTimeout + "\n" +
		"DETAIL:  The task ran for longer than its time limit of " + limit +
		" (the timeout given to lantern.async_task()).\n" +
		"HINT:  Submit the task again with a longer timeout."
}

// SubmitWithTimeout queues query with lantern.async_task(query, NULL,
// timeout); timeout nil passes NULL.
func SubmitWithTimeout(t *testing.T, conn QueryRower, query string, timeout *string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(Ctx(t), "SELECT lantern.async_task($1, NULL, $2::interval)", query, timeout).Scan(&id),
		"async_task(%q, NULL, %v)", query, Deref(timeout))
	return id
}

func Ptr[T any](v T) *T { return &v }

// RequireStoppedWithin asserts that the failed task's duration (submit to
// end) is under d: it was stopped, not left to run its long sleep.
func RequireStoppedWithin(t *testing.T, jobid int64, d time.Duration) {
	t.Helper()
	r := GetTask(t, nil, jobid)
	require.NotNil(t, r.Duration, "duration of task %d", jobid)
	require.Less(t, *r.Duration, d.Seconds(), "task %d must be stopped by its time limit", jobid)
}

func RequireTransactionTimeout(t *testing.T, conn *pgx.Conn, id int64) {
	t.Helper()
	msg := RequireFailedWithSQLState(t, conn, id, "25P04")
	require.Equal(t, "FATAL:  terminating connection due to transaction timeout", msg, "task %d", id)
	RequireStoppedWithin(t, id, 10*time.Second)
}
