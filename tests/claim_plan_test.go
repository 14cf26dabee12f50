package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClaimWalksPendingRowsInOrder: a claim walks the pending-rows index
// in jobid order and stops at its task, even when the statistics last saw
// an empty queue (as they do after every burst). A plan that fetched every
// pending row, checked its owner and sorted them read all of the index
// for each claim: n tasks queued at once read about n² entries (measured:
// 1013 per task for 1000, without the fix). The walk also reads entries
// of rows other workers claimed a moment ago, not yet dead to everyone
// (about 100 per task here with 4 workers): the bound is n²/10.
func TestClaimWalksPendingRowsInOrder(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "claimplan")
	conn := connect(t, role)
	const n = 3000

	entriesRead := func() int64 {
		return queryOne[int64](t, su, `SELECT idx_tup_read FROM pg_stat_all_indexes
			WHERE indexrelid = 'lantern.tasks_pending_idx'::regclass`)
	}
	waitNoWorkers(t, su)
	mustExec(t, su, "ANALYZE lantern.tasks")
	before := entriesRead()
	first, last := submitMany(t, conn, "SELECT 1", n)
	requireSucceeded(t, su, first, last)
	require.Eventually(t, func() bool {
		return queryOne[int64](t, su, `SELECT count(*) FROM lantern.tasks
			WHERE jobid BETWEEN $1 AND $2 AND status <> 'succeeded'`, first, last) == 0
	}, time.Minute, 20*time.Millisecond)
	waitNoWorkers(t, su)
	read := entriesRead() - before
	t.Logf("%d tasks queued at once: %d entries of the pending-rows index read (%.1f per task)", n, read, float64(read)/n)
	require.Less(t, read, int64(n*n/10), "index entries read by the claims of %d tasks", n)
}
