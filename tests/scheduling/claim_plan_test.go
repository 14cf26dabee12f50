package scheduling

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// TestClaimWalksPendingRowsInOrder: a claim walks the claims' queue in
// order (from 0.5.0 the index task_owners_due_idx: its role's entries by
// due time, then jobid) and looks at the first entries only, even when the
// statistics last saw an empty queue (as they do after every burst). A
// plan that fetched every pending row, checked each one's owner (an index
// scan of task_owners) and sorted them did that for every claim: n tasks
// queued at once made about n²/2 owner lookups (and read 1,013,000 index
// entries for 1000 tasks). Counted: scans of task_owners' primary key,
// which only the claim's own update of the owner row makes here, between
// one and a few per task; and scans of the queue's index, one per claim
// at least.
func TestClaimWalksPendingRowsInOrder(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "claimplan")
	conn := testkit.Connect(t, role)
	const n = 1000

	indexScans := func(index string) int64 {
		return testkit.QueryOne[int64](t, su, `SELECT idx_scan FROM pg_stat_all_indexes
			WHERE indexrelid = $1::regclass`, index)
	}
	ownerLookups := func() int64 { return indexScans("lantern.task_owners_pkey") }
	walks := func() int64 { return indexScans("lantern.task_owners_due_idx") }
	testkit.WaitNoWorkers(t, su)
	testkit.MustExec(t, su, "ANALYZE lantern.tasks")
	before, walksBefore := ownerLookups(), walks()
	first, last := testkit.SubmitMany(t, conn, "SELECT 1", n)
	testkit.RequirePoll(t, time.Minute, fmt.Sprintf("all %d tasks succeed", n),
		testkit.RowsLeft(su, 0, "lantern.tasks WHERE jobid BETWEEN $1 AND $2 AND status <> 'succeeded'", first, last))
	testkit.WaitNoWorkers(t, su)
	lookups, walked := ownerLookups()-before, walks()-walksBefore
	t.Logf("%d scans of the claims' queue index", walked)
	t.Logf("%d tasks queued at once: %d owner lookups (%.1f per task)", n, lookups, float64(lookups)/n)
	require.Less(t, lookups, int64(20*n), "owner lookups by the claims of %d tasks", n)
	// And at least one per task: each claim checks the owner of the row it
	// takes through that index. Fewer would mean the claims found owners
	// some other way (a scan or hash of task_owners, which reads every row
	// the role ever submitted), or that the count did not see the claims.
	require.GreaterOrEqual(t, lookups, int64(n), "owner lookups by the claims of %d tasks: one per task at least", n)
	require.GreaterOrEqual(t, walked, int64(n), "each claim walks the claims' queue index (task_owners_due_idx)")
}
