package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// rollbackPreparedAtEnd rolls back the prepared transaction gid, if it is
// still there, when the test ends.
func rollbackPreparedAtEnd(t *testing.T, gid string) {
	t.Helper()
	t.Cleanup(func() {
		conn, c, done := cleanupConn(t)
		defer done()
		if conn == nil {
			return
		}
		var n int
		if err := conn.QueryRow(c, "SELECT count(*)::int FROM pg_prepared_xacts WHERE gid = $1", gid).Scan(&n); err != nil || n == 0 {
			return
		}
		cleanupExec(t, fmt.Sprintf("ROLLBACK PREPARED '%s'", gid))
	})
}

// restartServer restarts the server (pg_ctl -m fast) and waits until it is ready.
func restartServer(t *testing.T) {
	t.Helper()
	require.NoError(t, cluster.Restart(pgcluster.Fast))
	ok, last := serverReady(t, waitTimeout)
	require.True(t, ok, last)
}

// TestPreparedTransactionTask (max_prepared_transactions > 0): a task
// ending in PREPARE TRANSACTION is 'succeeded' once prepared, its work
// uncommitted; and an ordinary user's prepared transaction that keeps its
// own pending task locked across a restart stalls neither cancel_all nor
// another role's task.
func TestPreparedTransactionTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	t.Cleanup(func() {
		cleanupExec(t, "ALTER SYSTEM RESET max_prepared_transactions")
		require.NoError(t, cluster.Restart(pgcluster.Fast))
		serverReady(t, waitTimeout)
	})
	mustExec(t, su, "ALTER SYSTEM SET max_prepared_transactions = 5")
	restartServer(t)
	su = connect(t, superuser)
	role := newTempRole(t, su, "prep")
	marker := markerTable(t, su, "prep", role)
	conn := connect(t, role)
	gid := uniq("prepgid")
	rollbackPreparedAtEnd(t, gid)
	id := submit(t, conn, fmt.Sprintf("BEGIN; INSERT INTO %s VALUES (1); PREPARE TRANSACTION '%s'", marker, gid))
	requireSucceeded(t, conn, id)
	require.Equal(t, 1, queryOne[int](t, su, "SELECT count(*)::int FROM pg_prepared_xacts WHERE gid = $1", gid))
	require.Empty(t, markerValues(t, marker), "a prepared task's work commits only at COMMIT PREPARED")
	mustExec(t, su, fmt.Sprintf("ROLLBACK PREPARED '%s'", gid))

	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	pend := submit(t, conn, markerInsert(marker, 2))
	gid2 := uniq("prepgid")
	rollbackPreparedAtEnd(t, gid2)
	mustExec(t, conn, "BEGIN")
	require.True(t, queryOne[bool](t, conn, "SELECT lantern.cancel_task($1)", pend))
	mustExec(t, conn, fmt.Sprintf("PREPARE TRANSACTION '%s'", gid2))
	lock.release(t)
	requireSucceeded(t, su, blockers...)
	restartServer(t)
	su = connect(t, superuser)
	start := time.Now()
	mustExec(t, su, "SELECT lantern.cancel_all_async_tasks()")
	require.Less(t, time.Since(start), 3*time.Second, "cancel_all with a prepared lock on a pending row")
	alice := connect(t, "alice")
	start = time.Now()
	requireSucceeded(t, alice, submit(t, alice, "SELECT 1"))
	require.Less(t, time.Since(start), 3*time.Second, "another role's task with the prepared lock in place")
}
