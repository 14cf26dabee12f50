package durability

import (
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// TestRestart stops the server while all workers are busy and one task is
// queued, then checks that the launcher comes back, the queued task still
// runs, the interrupted tasks do not stay 'running' forever, and new tasks
// work.
func TestRestart(t *testing.T) {
	for _, mode := range []pgcluster.StopMode{pgcluster.Fast, pgcluster.Immediate} {
		t.Run(string(mode), func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			marker := testkit.MarkerTable(t, su, "restart_marker")

			// Occupy every worker, then queue one more task.
			blockers := testkit.HoldAdvisoryLock(t).BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
			queued := testkit.Submit(t, su, testkit.MarkerInsert(marker, 1))
			require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, queued).Status), "all workers are busy")

			err := testkit.Cluster.Restart(mode)
			require.NoError(t, err, "restart -m %s", mode)

			// Old connections died with the server.
			su = testkit.Connect(t, testkit.Superuser)
			testkit.RequireHealthy(t)

			testkit.RequireSucceeded(t, su, queued)
			require.Equal(t, []int{1}, testkit.MarkerValues(t, marker), "the queued task ran exactly once")

			// An interrupted task ends 'failed' ("the server stopped ...",
			// 57P01; README "Crashes and restarts"): it neither stays
			// 'running' or 'pending' nor runs again to 'succeeded'.
			require.Len(t, blockers, testkit.Cluster.MaxWorkers())
			for _, id := range blockers {
				requireKilled(t, su, id, msgServerStopped)
			}

			testkit.RequireSucceeded(t, su, testkit.Submit(t, su, testkit.MarkerInsert(marker, 2)))
			require.Equal(t, []int{1, 2}, testkit.MarkerValues(t, marker))
		})
	}
}
