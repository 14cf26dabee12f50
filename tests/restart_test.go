package tests

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// TestRestart stops the server while all workers are busy and one task is
// queued, then checks that the dispatcher comes back, the queued task still
// runs, the interrupted tasks do not stay 'running' forever, and new tasks
// work.
func TestRestart(t *testing.T) {
	for _, mode := range []pgcluster.StopMode{pgcluster.Fast, pgcluster.Immediate} {
		t.Run(string(mode), func(t *testing.T) {
			if cluster.Backend() == pgcluster.BackendDocker {
				t.Skipf("restart is %v", pgcluster.ErrNotSupported)
			}
			begin(t)
			su := connect(t, superuser)
			lockConn := connect(t, superuser)
			key := 8_000_000 + nameCounter.Add(1)
			marker := ident(t, uniq("restart_marker"))
			mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", marker))

			// Occupy every worker, then queue one more task.
			mustExec(t, lockConn, "SELECT pg_advisory_lock($1)", key)
			var blockers []int64
			for range cluster.MaxWorkers() {
				blockers = append(blockers, submit(t, su, fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", key)))
			}
			waitBlocked(t, su, blockers, key)
			queued := submit(t, su, fmt.Sprintf("INSERT INTO %s VALUES (1)", marker))
			require.Equal(t, "pending", deref(getTask(t, su, queued).Status), "all workers are busy")

			err := cluster.Restart(mode)
			if errors.Is(err, pgcluster.ErrNotSupported) {
				t.Skipf("restart: %v", err)
			}
			require.NoError(t, err, "restart -m %s", mode)

			// Old connections died with the server.
			su = connect(t, superuser)
			requireHealthy(t)

			requireSucceeded(t, su, queued)
			require.Equal(t, []int{1}, markerValues(t, marker), "the queued task ran exactly once")

			// Beyond the written contract: an interrupted task must reach a
			// final status rather than stay 'running' (or 'pending') forever.
			for _, id := range blockers {
				status, msg := waitTask(t, su, id)
				t.Logf("interrupted task %d ended %s: %s", id, status, msg)
			}

			after := submit(t, su, fmt.Sprintf("INSERT INTO %s VALUES (2)", marker))
			requireSucceeded(t, su, after)
			require.Equal(t, []int{1, 2}, markerValues(t, marker))
		})
	}
}
