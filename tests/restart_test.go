package tests

import (
	"testing"

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
			begin(t)
			su := connect(t, superuser)
			marker := markerTable(t, su, "restart_marker")

			// Occupy every worker, then queue one more task.
			blockers := holdAdvisoryLock(t).blockWorkers(t, su, cluster.MaxWorkers())
			queued := submit(t, su, markerInsert(marker, 1))
			require.Equal(t, "pending", deref(getTask(t, su, queued).Status), "all workers are busy")

			err := cluster.Restart(mode)
			require.NoError(t, err, "restart -m %s", mode)

			// Old connections died with the server.
			su = connect(t, superuser)
			requireHealthy(t)

			requireSucceeded(t, su, queued)
			require.Equal(t, []int{1}, markerValues(t, marker), "the queued task ran exactly once")

			// An interrupted task ends 'failed' ("the server stopped ...",
			// 57P01; README "Crashes and restarts"): it neither stays
			// 'running' or 'pending' nor runs again to 'succeeded'.
			require.Len(t, blockers, cluster.MaxWorkers())
			for _, id := range blockers {
				requireKilled(t, su, id, msgServerStopped)
			}

			requireSucceeded(t, su, submit(t, su, markerInsert(marker, 2)))
			require.Equal(t, []int{1, 2}, markerValues(t, marker))
		})
	}
}
