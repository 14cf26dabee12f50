package scheduling

import (
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestLiveWorkerReportsStatistics: a worker hands its tasks' table counts
// to the cumulative statistics while it lives, not only when it exits.
// Under a steady stream of tasks a worker never exits, and autovacuum,
// which reads those counts, would never see the dead rows of
// lantern.tasks or of the tasks' own tables.
func TestLiveWorkerReportsStatistics(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, testkit.SlowIdleTimeout)
	role := testkit.NewTempRole(t, su, "livestats")
	conn := testkit.Connect(t, role)
	table := testkit.Ident(t, testkit.Uniq("statsprobe"))
	testkit.MustExec(t, su, "CREATE TABLE "+table+" (x int)")
	t.Cleanup(func() { testkit.CleanupExec(t, "DROP TABLE IF EXISTS "+table) })
	testkit.MustExec(t, su, "GRANT INSERT ON "+table+" TO "+role)

	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "INSERT INTO "+table+" SELECT generate_series(1, 100)"))
	pid := testkit.QueryOne[int](t, su, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1 AND usename = $2",
		testkit.BackendWorker, role)

	// Well before the worker's idle timeout (SlowIdleTimeout) ends it.
	require.Eventually(t, func() bool {
		return testkit.QueryOne[int64](t, su, "SELECT coalesce(n_tup_ins, 0) FROM pg_stat_user_tables WHERE relid = $1::regclass", table) == 100
	}, testkit.HandoffBound, 50*time.Millisecond, "the live worker's inserts reach pg_stat_user_tables")
	still := testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1", pid)
	require.Equal(t, 1, still, "the counts came from the worker while it lived, not from its exit")
}
