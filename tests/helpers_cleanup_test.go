package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Cleanups and held transactions for freeze_test.go,
// cancel_strict_test.go, timeout_test.go and outcome_restart_test.go.

// cleanupTimeout bounds each SQL statement a t.Cleanup runs (t.Context()
// is already canceled by then).
const cleanupTimeout = 30 * time.Second

// cleanupExec runs sql as the superuser on a fresh connection, from a
// t.Cleanup; a failure is reported but does not stop the other cleanups.
func cleanupExec(t *testing.T, sql string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := cluster.Exec(c, dbName, sql); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// heldTx is a transaction opened with BEGIN on a connection of its own and
// kept open until end, or rolled back when the test ends.
type heldTx struct {
	conn  *pgx.Conn
	ended bool
}

// beginHeld opens a transaction on conn (which the test must not use for
// anything else while it is open).
func beginHeld(t *testing.T, conn *pgx.Conn) *heldTx {
	t.Helper()
	mustExec(t, conn, "BEGIN")
	h := &heldTx{conn: conn}
	t.Cleanup(func() {
		if !h.ended && !conn.IsClosed() {
			c, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			defer cancel()
			_, _ = conn.Exec(c, "ROLLBACK")
		}
	})
	return h
}

// end ends the transaction with COMMIT or ROLLBACK.
func (h *heldTx) end(t *testing.T, how string) {
	t.Helper()
	mustExec(t, h.conn, how)
	h.ended = true
}

// workerStartLine is what the postmaster logs at DEBUG1 each time it starts
// a lantern_async worker process (bgw_name "lantern_async worker <slot>").
const workerStartLine = `starting background worker process "` + backendWorker

// debugServerLog sets log_min_messages = debug1 until the test ends, and
// waits until the postmaster has reloaded its configuration.
func debugServerLog(t *testing.T, su *pgx.Conn) {
	t.Helper()
	t.Cleanup(func() {
		cleanupExec(t, "ALTER SYSTEM RESET log_min_messages")
		cleanupExec(t, "SELECT pg_reload_conf()")
	})
	from := len(cluster.Log())
	mustExec(t, su, "ALTER SYSTEM SET log_min_messages = debug1")
	mustExec(t, su, "SELECT pg_reload_conf()")
	requirePoll(t, waitTimeout, "the postmaster to reload its configuration", func() (bool, string) {
		return strings.Contains(cluster.Log()[from:], "received SIGHUP, reloading configuration files"), "no reload logged yet"
	})
}

// workerStartsSince counts the worker processes the postmaster started
// since the server log had length from (see debugServerLog).
func workerStartsSince(from int) int {
	return strings.Count(cluster.Log()[from:], workerStartLine)
}

// requireFailedLike waits for the task and asserts it failed with SQLSTATE
// sqlstate and an error_message containing want.
func requireFailedLike(t *testing.T, conn *pgx.Conn, jobid int64, sqlstate, want string) {
	t.Helper()
	msg := requireFailedWithSQLState(t, conn, jobid, sqlstate)
	require.Contains(t, msg, want, "error_message of task %d", jobid)
}
