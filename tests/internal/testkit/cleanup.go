package testkit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Cleanups, held transactions, and worker starts counted in a debug1 log.

// CleanupTimeout bounds each SQL statement a t.Cleanup runs (t.Context()
// is already canceled by then).
const CleanupTimeout = 30 * time.Second

// CleanupExec runs sql as the superuser on a fresh connection, from a
// t.Cleanup; a failure is reported but does not stop the other cleanups.
func CleanupExec(t *testing.T, sql string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
	defer cancel()
	if err := Cluster.Exec(c, DBName, sql); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// HeldTx is a transaction opened with BEGIN on a connection of its own and
// kept open until end, or rolled back when the test ends.
type HeldTx struct {
	Conn  *pgx.Conn
	ended bool
}

// BeginHeld opens a transaction on conn (which the test must not use for
// anything else while it is open).
func BeginHeld(t *testing.T, conn *pgx.Conn) *HeldTx {
	t.Helper()
	MustExec(t, conn, "BEGIN")
	h := &HeldTx{Conn: conn}
	t.Cleanup(func() {
		if !h.ended && !conn.IsClosed() {
			c, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
			defer cancel()
			_, _ = conn.Exec(c, "ROLLBACK")
		}
	})
	return h
}

// end ends the transaction with COMMIT or ROLLBACK.
func (h *HeldTx) End(t *testing.T, how string) {
	t.Helper()
	MustExec(t, h.Conn, how)
	h.ended = true
}

// WorkerStartLine is what the postmaster logs at DEBUG1 each time it starts
// a lantern_async worker process (bgw_name "lantern_async worker <slot>").
const WorkerStartLine = `starting background worker process "` + BackendWorker

// DebugServerLog sets log_min_messages = debug1 until the test ends, and
// waits until the postmaster has reloaded its configuration.
func DebugServerLog(t *testing.T, su *pgx.Conn) {
	t.Helper()
	t.Cleanup(func() {
		CleanupExec(t, "ALTER SYSTEM RESET log_min_messages")
		CleanupExec(t, "SELECT pg_reload_conf()")
	})
	from := len(Cluster.Log())
	MustExec(t, su, "ALTER SYSTEM SET log_min_messages = debug1")
	MustExec(t, su, "SELECT pg_reload_conf()")
	RequirePoll(t, WaitTimeout, "the postmaster to reload its configuration", func() (bool, string) {
		return strings.Contains(Cluster.Log()[from:], "received SIGHUP, reloading configuration files"), "no reload logged yet"
	})
}

// WorkerStartsSince counts the worker processes the postmaster started
// since the server log had length from (see DebugServerLog).
func WorkerStartsSince(from int) int {
	return strings.Count(Cluster.Log()[from:], WorkerStartLine)
}

// RequireFailedLike waits for the task and asserts it failed with SQLSTATE
// sqlstate and an error_message containing want.
func RequireFailedLike(t *testing.T, conn *pgx.Conn, jobid int64, sqlstate, want string) {
	t.Helper()
	msg := RequireFailedWithSQLState(t, conn, jobid, sqlstate)
	require.Contains(t, msg, want, "error_message of task %d", jobid)
}
