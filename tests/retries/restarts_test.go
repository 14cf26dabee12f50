package retries

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// retryBurst is how many tasks each restart cycle of
// TestRetriesExactAcrossRestarts queues.
const retryBurst = 40

// TestRetriesExactAcrossRestarts: bursts of tasks with retries, whose
// attempts fail at random (two in three, 40001) or succeed and insert the
// task's marker value, and tasks that commit an insert and then fail
// (never to be retried), with fast and immediate restarts while attempts
// run and wait. Whatever a restart interrupts:
//   - a task succeeded exactly when its insert committed, once;
//   - its attempts are numbered 1, 2, ... without a gap, and none started
//     before the one before it ended (never two at once);
//   - a task that committed work ran once.
func TestRetriesExactAcrossRestarts(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "retried", "alice")
	committed := testkit.MarkerTable(t, su, "committed", "alice")
	seq := newSequence(t, su, "alice")
	var ids, committing []int64
	for cycle, mode := range []pgcluster.StopMode{pgcluster.Fast, pgcluster.Immediate, pgcluster.Fast, pgcluster.Immediate} {
		alice := testkit.Connect(t, "alice")
		first := cycle * retryBurst
		for i := first; i < first+retryBurst; i++ {
			ids = append(ids, submitRetries(t, alice, flakyInsert(seq, marker, i), 3))
			if i%8 == 0 {
				q := fmt.Sprintf("BEGIN; %s; COMMIT; %s", testkit.MarkerInsert(committed, i), alwaysFailing("40001"))
				committing = append(committing, submitRetries(t, alice, q, 3))
			}
		}
		waitAttempts(t, su, ids[first:], retryBurst/2)
		require.NoError(t, testkit.Cluster.Restart(mode), "restart %d (%s)", cycle, mode)
		ok, last := testkit.ServerReady(t, testkit.WaitTimeout)
		require.True(t, ok, last)
		su = testkit.Connect(t, testkit.Superuser)
	}
	testkit.WaitAllFinal(t, su, append(append([]int64{}, ids...), committing...))
	requireRetriedExact(t, su, marker, ids)
	for _, v := range countValues(t, su, committed) {
		require.Equal(t, 1, v, "a task that committed its insert ran once")
	}
	for _, id := range committing {
		require.LessOrEqual(t, len(attempts(t, su, id)), 1, "task %d committed work: one attempt", id)
	}
}

// flakyInsert fails two attempts in three at random (by the shared
// sequence), and otherwise inserts value in the same transaction.
func flakyInsert(seq, marker string, value int) string {
	return fmt.Sprintf(`DO $$ BEGIN IF nextval('%s') %% 3 <> 0 THEN RAISE EXCEPTION 'flaky' USING ERRCODE = '40001'; END IF; END $$; %s`,
		seq, testkit.MarkerInsert(marker, value))
}

// waitAttempts waits until the tasks have n attempts recorded among them.
func waitAttempts(t *testing.T, su *pgx.Conn, ids []int64, n int) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("%d attempts recorded", n), func() (bool, string) {
		got := testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.task_attempts WHERE jobid = ANY ($1)", ids)
		return got >= n, fmt.Sprintf("%d attempts", got)
	})
}

// countValues counts each value of a marker table.
func countValues(t *testing.T, su *pgx.Conn, marker string) map[int]int {
	t.Helper()
	counts := map[int]int{}
	for _, v := range testkit.MarkerValues(t, marker) {
		counts[v]++
	}
	return counts
}

// requireRetriedExact checks the invariants of TestRetriesExactAcrossRestarts
// for tasks ids, whose marker values are 0, 1, ... in order.
func requireRetriedExact(t *testing.T, su *pgx.Conn, marker string, ids []int64) {
	t.Helper()
	present := countValues(t, su, marker)
	st, err := testkit.StatusesOf(su, ids)
	require.NoError(t, err)
	var retried, succeeded int
	for i, id := range ids {
		as := attempts(t, su, id)
		if st[i] == "succeeded" {
			succeeded++
			assert.Equal(t, 1, present[i], "task %d succeeded: its insert committed once", id)
		} else {
			assert.Zero(t, present[i], "task %d ended %s, but its insert committed", id, st[i])
		}
		for j, a := range as {
			assert.Equal(t, j+1, a.Number, "task %d's attempts in order, without a gap", id)
			if j > 0 {
				assert.False(t, a.Started.Before(as[j-1].ended()), "task %d: attempt %d started before %d ended", id, a.Number, j)
			}
		}
		if len(as) > 1 {
			retried++
		}
	}
	t.Logf("%d tasks: %d succeeded, %d retried", len(ids), succeeded, retried)
	require.Positive(t, retried, "some tasks were retried")
}
