package durability

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// TestPreparedTransactionTask (max_prepared_transactions > 0): a task
// ending in PREPARE TRANSACTION is 'succeeded' once prepared, its work
// uncommitted; and an ordinary user's prepared transaction that keeps its
// own pending task locked across a restart stalls neither cancel_all nor
// another role's task.
func TestPreparedTransactionTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	t.Cleanup(func() {
		testkit.CleanupExec(t, "ALTER SYSTEM RESET max_prepared_transactions")
		require.NoError(t, testkit.Cluster.Restart(pgcluster.Fast))
		testkit.ServerReady(t, testkit.WaitTimeout)
	})
	testkit.MustExec(t, su, "ALTER SYSTEM SET max_prepared_transactions = 5")
	testkit.RestartServer(t)
	su = testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "prep")
	marker := testkit.MarkerTable(t, su, "prep", role)
	conn := testkit.Connect(t, role)
	gid := testkit.Uniq("prepgid")
	testkit.RollbackPreparedAtEnd(t, gid)
	id := testkit.Submit(t, conn, fmt.Sprintf("BEGIN; INSERT INTO %s VALUES (1); PREPARE TRANSACTION '%s'", marker, gid))
	testkit.RequireSucceeded(t, conn, id)
	require.Equal(t, 1, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_prepared_xacts WHERE gid = $1", gid))
	require.Empty(t, testkit.MarkerValues(t, marker), "a prepared task's work commits only at COMMIT PREPARED")
	testkit.MustExec(t, su, fmt.Sprintf("ROLLBACK PREPARED '%s'", gid))

	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	pend := testkit.Submit(t, conn, testkit.MarkerInsert(marker, 2))
	gid2 := testkit.Uniq("prepgid")
	testkit.RollbackPreparedAtEnd(t, gid2)
	testkit.MustExec(t, conn, "BEGIN")
	require.True(t, testkit.QueryOne[bool](t, conn, "SELECT lantern.cancel_task($1)", pend))
	testkit.MustExec(t, conn, fmt.Sprintf("PREPARE TRANSACTION '%s'", gid2))
	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	testkit.RestartServer(t)
	su = testkit.Connect(t, testkit.Superuser)
	start := time.Now()
	testkit.MustExec(t, su, "SELECT lantern.cancel_all_async_tasks()")
	require.Less(t, time.Since(start), 3*time.Second, "cancel_all with a prepared lock on a pending row")
	alice := testkit.Connect(t, "alice")
	start = time.Now()
	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))
	require.Less(t, time.Since(start), 3*time.Second, "another role's task with the prepared lock in place")
}
