package scheduling

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Parallel query and the tasks share the background worker slots (README,
// "Configuration"): at start the server log says so when max_worker_processes
// leaves parallel queries room to take every slot the tasks need, and what
// to set; with enough slots it says nothing. On clusters of their own, at
// both sides of the limit: lantern_async.max_workers 4 and its launcher,
// the logical replication launcher, and max_parallel_workers 8 need 14.

const crowdingWarning = "WARNING:  parallel queries can take the background worker processes that lantern_async's tasks need"

func TestParallelQueryCrowdingWarned(t *testing.T) {
	for _, tc := range []struct {
		workerProcesses int
		warned          bool
	}{
		{13, true},
		{14, false},
	} {
		t.Run(fmt.Sprintf("max_worker_processes=%d", tc.workerProcesses), func(t *testing.T) {
			testkit.Begin(t)
			extra := testkit.StartExtraCluster(t, pgcluster.Options{MaxWorkers: 4, ExtraConf: []string{
				fmt.Sprintf("max_worker_processes = %d", tc.workerProcesses),
				"max_parallel_workers = 8",
				"max_logical_replication_workers = 4",
			}})
			conn := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
			require.Equal(t, fmt.Sprint(tc.workerProcesses), testkit.QueryOne[string](t, conn, "SHOW max_worker_processes"))
			require.Equal(t, "4", testkit.QueryOne[string](t, conn, "SHOW lantern_async.max_workers"))
			log := extra.Log()
			if !tc.warned {
				require.NotContains(t, log, "parallel queries can take", "enough slots: no warning")
				return
			}
			at := strings.Index(log, crowdingWarning)
			require.GreaterOrEqual(t, at, 0, "server log must have the line %q; log:\n%s", crowdingWarning, log)
			rest := log[at:]
			require.Contains(t, rest, "DETAIL:  max_worker_processes is 13; lantern_async uses up to 5 "+
				"(lantern_async.max_workers is 4, and its launcher), the logical replication launcher 1, "+
				"and parallel queries up to 8 (max_parallel_workers)")
			require.Contains(t, rest, "HINT:  Set max_worker_processes to at least 14, or max_parallel_workers to at most 7.")
		})
	}
}
