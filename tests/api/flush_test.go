package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// TestReadOnlyTaskCostsOneWALFlush: a task that writes nothing has no
// commit of its own to flush, so its outcome goes in with the worker's
// next claim, which is flushed anyway: one WAL flush per task, not two.
// (Throughput of trivial tasks is bound by WAL flushes: with two per task,
// four workers spent three quarters of their time waiting on WALWrite.)
// On a cluster of its own with max_workers = 1, so that one worker runs
// every task and no flush of one covers another's (group commit), and
// fsync = on, so that the statistics count the flushes.
func TestReadOnlyTaskCostsOneWALFlush(t *testing.T) {
	testkit.Begin(t)
	extra := testkit.StartExtraCluster(t, pgcluster.Options{MaxWorkers: 1, ExtraConf: []string{"fsync = on"}})
	su := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
	testkit.MustExec(t, su, "CREATE EXTENSION lantern_async")
	const n = 300

	walSyncs := "SELECT wal_sync FROM pg_stat_wal"
	if testkit.ServerVersionNum(t) >= 180000 {
		// 18 moved the WAL I/O counts from pg_stat_wal to pg_stat_io.
		walSyncs = "SELECT sum(fsyncs)::bigint FROM pg_stat_io WHERE object = 'wal'"
	}
	syncs := func() int64 {
		testkit.WaitNoWorkers(t, su)
		return testkit.QueryOne[int64](t, su, walSyncs)
	}
	before := syncs()
	first := testkit.QueryOne[int64](t, su, "SELECT min(lantern.async_task('SELECT 1')) FROM generate_series(1, $1)", n)
	testkit.RequirePoll(t, time.Minute, fmt.Sprintf("all %d tasks succeed", n),
		testkit.RowsLeft(su, n, "lantern.tasks WHERE jobid >= $1 AND status = 'succeeded'", first))
	flushes := syncs() - before
	t.Logf("%d read-only tasks queued in one transaction: %d WAL flushes (%.2f per task)", n, flushes, float64(flushes)/n)
	// The submit's commit, one claim per task, and a little background.
	require.LessOrEqual(t, flushes, int64(n+n/4), "WAL flushes for %d read-only tasks", n)
	require.GreaterOrEqual(t, flushes, int64(n), "every claim is flushed")
}
