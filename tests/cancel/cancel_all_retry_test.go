package cancel

import (
	"context"
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// tasksRowsRead is how many rows and index entries of lantern.tasks the
// connection's backend has read since its statistics were last flushed:
// within one open transaction, what its statements read.
func tasksRowsRead(t *testing.T, conn *pgx.Conn) int64 {
	t.Helper()
	return testkit.QueryOne[int64](t, conn, `
		SELECT coalesce(sum(pg_catalog.pg_stat_get_xact_tuples_returned(c.oid)
		                  + pg_catalog.pg_stat_get_xact_tuples_fetched(c.oid)), 0)::bigint
		FROM pg_catalog.pg_class c
		WHERE c.oid = 'lantern.tasks'::regclass
		   OR c.oid IN (SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = 'lantern.tasks'::regclass)`)
}

// TestCancelAllRetriesReadOnlyTheHeldRows: while a claim holds one of the
// role's pending rows, cancel_all_async_tasks() tries that row again for a
// moment, by its jobid: each retry reads that row, not the queue. With an
// old snapshot open (as pg_dump keeps one), the queue index's entries of
// tasks canceled since cannot be removed by any scan, so each walk of the
// queue reads all of them: 100 retries that walk it read 100 times as much
// (30 s on a loaded machine with 300,000 of them), and so does a retry
// statement planned without its jobids: a generic plan, which the role's
// own plan_cache_mode must not impose on the extension's statements.
func TestCancelAllRetriesReadOnlyTheHeldRows(t *testing.T) {
	for _, mode := range []string{"auto", "force_generic_plan"} {
		t.Run("plan_cache_mode="+mode, func(t *testing.T) { testCancelAllRetries(t, mode) })
	}
}

func testCancelAllRetries(t *testing.T, planCacheMode string) {
	const dead = 20000
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_all_retry")
	old := testkit.Connect(t, testkit.Superuser)
	r := newClaimRace(t, su, role, func(conn *pgx.Conn) {
		testkit.MustExec(t, conn, "SET plan_cache_mode = "+planCacheMode)
		testkit.SubmitMany(t, conn, "SELECT 1", dead)
		testkit.BeginHeld(t, old)
		testkit.MustExec(t, old, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
		require.Equal(t, int64(dead), testkit.QueryOne[int64](t, old,
			"SELECT count(*) FROM lantern.tasks WHERE status = 'pending' AND username = $1", role),
			"the old snapshot sees the role's tasks pending")
		testkit.MustExec(t, conn, "SELECT lantern.cancel_all_async_tasks()")
	})

	before := tasksRowsRead(t, r.conn)
	call := startCall(func() (*bool, error) {
		_, err := r.conn.Exec(context.Background(), "SELECT lantern.cancel_all_async_tasks()")
		return nil, err
	})
	testkit.RequirePoll(t, testkit.WaitTimeout, "cancel_all_async_tasks() to return while a claim holds the row", call.finished)
	require.NoError(t, call.err)
	read := tasksRowsRead(t, r.conn) - before
	t.Logf("cancel_all_async_tasks() read %d rows and index entries of lantern.tasks, %d of them dead", read, dead)
	// A walk of the queue reads each dead entry: the pass that cancels and
	// the look for what was left read 2 × dead (4 × under some plans); 100
	// retries that each walk it, 200 × dead.
	require.Less(t, read, int64(8*dead), fmt.Sprintf("the retries of cancel_all_async_tasks() walk the queue "+
		"(%d dead entries): they must read only the rows they wait for", dead))

	r.claim.End(t, "COMMIT")
	r.requireUnlocked(t, su, "after cancel_all_async_tasks() returned")
	r.finish(t, su)
}
