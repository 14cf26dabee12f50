package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClaimWalksPendingRowsInOrder: a claim walks the pending-rows index
// in jobid order and checks the owner of the first pending rows only, even
// when the statistics last saw an empty queue (as they do after every
// burst). A plan that fetched every pending row, checked each one's owner
// (an index scan of task_owners) and sorted them did that for every claim:
// n tasks queued at once made about n²/2 owner lookups (and read 1,013,000
// index entries for 1000 tasks). Counted: scans of task_owners' primary
// key, which only the owner check makes here.
func TestClaimWalksPendingRowsInOrder(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "claimplan")
	conn := connect(t, role)
	const n = 1000

	ownerLookups := func() int64 {
		return queryOne[int64](t, su, `SELECT idx_scan FROM pg_stat_all_indexes
			WHERE indexrelid = 'lantern.task_owners_pkey'::regclass`)
	}
	waitNoWorkers(t, su)
	mustExec(t, su, "ANALYZE lantern.tasks")
	before := ownerLookups()
	first, last := submitMany(t, conn, "SELECT 1", n)
	require.Eventually(t, func() bool {
		return queryOne[int64](t, su, `SELECT count(*) FROM lantern.tasks
			WHERE jobid BETWEEN $1 AND $2 AND status <> 'succeeded'`, first, last) == 0
	}, time.Minute, 20*time.Millisecond, "all %d tasks succeed", n)
	waitNoWorkers(t, su)
	lookups := ownerLookups() - before
	t.Logf("%d tasks queued at once: %d owner lookups (%.1f per task)", n, lookups, float64(lookups)/n)
	require.Less(t, lookups, int64(20*n), "owner lookups by the claims of %d tasks", n)
}
