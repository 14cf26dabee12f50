package retries

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestRetriedUntilItSucceeds: a task that fails twice with a serialization
// failure, then succeeds, is tried three times, each attempt after its
// backoff, and each recorded.
func TestRetriedUntilItSucceeds(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	seq := newSequence(t, su, "alice")
	id := submitRetries(t, alice, failingUntil(seq, 2, "40001"), 3)
	testkit.RequireSucceeded(t, alice, id)

	as := attempts(t, alice, id)
	require.Len(t, as, 3, "attempts of task %d", id)
	for i, a := range as {
		require.Equal(t, i+1, a.Number)
	}
	require.Equal(t, "40001", testkit.Deref(as[0].SQLState))
	require.Contains(t, testkit.Deref(as[0].Error), "transient failure 1")
	require.Equal(t, "40001", testkit.Deref(as[1].SQLState))
	require.Contains(t, testkit.Deref(as[1].Error), "transient failure 2")
	require.Nil(t, as[2].SQLState, "the last attempt succeeded")
	require.Nil(t, as[2].Error, "the last attempt succeeded")
	requireBackoffs(t, as)
}

// TestRetriesRunOut: a task that always deadlocks, with two retries, ends
// failed after three attempts, with the last attempt's error and SQLSTATE.
func TestRetriesRunOut(t *testing.T) {
	testkit.Begin(t)
	bob := testkit.Connect(t, "bob")
	id := submitRetries(t, bob, alwaysFailing("40P01"), 2)
	msg := testkit.RequireFailedWithSQLState(t, bob, id, "40P01")
	as := attempts(t, bob, id)
	require.Len(t, as, 3, "attempts of task %d", id)
	require.Equal(t, testkit.Deref(as[2].Error), msg, "the task's error is its last attempt's")
	requireBackoffs(t, as)
}

// TestOnlyTransientFailuresAreRetried: a division by zero (22012) would
// fail again: it is not retried; lock_not_available (55P03) is.
func TestOnlyTransientFailuresAreRetried(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	carol := testkit.Connect(t, "carol")
	id := submitRetries(t, carol, "SELECT 1/0", 3)
	testkit.RequireFailedWithSQLState(t, carol, id, "22012")
	require.Len(t, attempts(t, carol, id), 1, "a division by zero is tried once")

	seq := newSequence(t, su, "carol")
	id = submitRetries(t, carol, failingUntil(seq, 1, "55P03"), 1)
	testkit.RequireSucceeded(t, carol, id)
	require.Len(t, attempts(t, carol, id), 2, "lock_not_available is retried")
}

// TestAttemptRowsOnlyWithRetries: the default (no retries) fails at once,
// and its one attempt is the task's own row; a task with retries that
// succeeds at once has one attempt's row, whether its success was
// recorded with its work (an insert) or after it (a read-only query).
func TestAttemptRowsOnlyWithRetries(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	id := testkit.Submit(t, alice, alwaysFailing("40001"))
	testkit.RequireFailedWithSQLState(t, alice, id, "40001")
	require.Empty(t, attempts(t, alice, id))

	marker := testkit.MarkerTable(t, su, "once", "alice")
	for _, q := range []string{"SELECT 1", testkit.MarkerInsert(marker, 1)} {
		id = submitRetries(t, alice, q, 2)
		testkit.RequireSucceeded(t, alice, id)
		as := attempts(t, alice, id)
		require.Len(t, as, 1, q)
		require.Nil(t, as[0].SQLState, q)
		require.Positive(t, as[0].Duration, q)
	}
}

// TestCommittedWorkIsNeverRetried: a task whose first transaction
// committed an insert, and whose second then failed with a serialization
// failure, is not run again (the insert would be done twice): it fails,
// saying why. A read-only transaction committed first does not count.
func TestCommittedWorkIsNeverRetried(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	bob := testkit.Connect(t, "bob")
	marker := testkit.MarkerTable(t, su, "committed", "bob")
	query := fmt.Sprintf("BEGIN; %s; COMMIT; %s", testkit.MarkerInsert(marker, 1), alwaysFailing("40001"))
	id := submitRetries(t, bob, query, 3)
	msg := testkit.RequireFailedWithSQLState(t, bob, id, "40001")
	require.Contains(t, msg, "did not retry the task: a transaction of it had committed")
	require.Equal(t, []int{1}, testkit.MarkerValues(t, marker), "the committed insert, once")
	require.Len(t, attempts(t, bob, id), 1)

	seq := newSequence(t, su, "bob")
	id = submitRetries(t, bob, "BEGIN; SELECT 1; COMMIT; "+failingUntil(seq, 1, "40001"), 1)
	testkit.RequireSucceeded(t, bob, id)
	require.Len(t, attempts(t, bob, id), 2, "a read-only transaction committed nothing")
}

// TestPendingBetweenAttempts: between attempts the task is pending, with
// no error_message yet, and due at its next attempt: its backoff after the
// last attempt ended.
func TestPendingBetweenAttempts(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	carol := testkit.Connect(t, "carol")
	id := submitRetries(t, carol, alwaysFailing("40001"), 20)
	var n int
	var wait float64
	var due time.Time
	var errMsg *string
	// One statement: the task's row, its queue entry and its last attempt, as of one snapshot.
	testkit.RequirePoll(t, testkit.WaitTimeout, "the task waiting for its next attempt", func() (bool, string) {
		err := su.QueryRow(testkit.Ctx(t), `
			SELECT a.attempt, extract(epoch FROM o.due - (a.started_at + a.duration))::float8, o.due, t.error_message
			FROM lantern.tasks t JOIN lantern.task_owners o ON o.jobid = t.jobid
			JOIN lantern.task_attempts a ON a.jobid = t.jobid
			WHERE t.jobid = $1 AND t.status = 'pending' AND o.due IS NOT NULL
			ORDER BY a.attempt DESC LIMIT 1`, id).Scan(&n, &wait, &due, &errMsg)
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("after attempt %d, due %.3f s after it ended", n, wait)
	require.Nil(t, errMsg, "a task waiting for its next attempt has no error_message")
	require.GreaterOrEqual(t, wait, minBackoff(n).Seconds(), "due after attempt %d", n)
	require.LessOrEqual(t, wait, maxBackoff(n).Seconds()+0.1, "due after attempt %d", n)

	// The next attempt starts at that time: not before, and not on a polling tick.
	testkit.RequirePoll(t, testkit.WaitTimeout, "the next attempt", func() (bool, string) {
		as := attempts(t, carol, id)
		return len(as) > n, fmt.Sprintf("%d attempts", len(as))
	})
	late := attempts(t, carol, id)[n].Started.Sub(due)
	t.Logf("attempt %d started %v after it was due", n+1, late.Round(time.Microsecond))
	require.GreaterOrEqual(t, late, time.Duration(0), "attempt %d started before it was due", n+1)
	require.Less(t, late, lateStart, "attempt %d after it was due", n+1)
	testkit.RequireCancelTask(t, carol, id, true)
}

// TestRetriesRefusedOutOfRange: retries must be between 0 and 100; a bad
// count queues nothing.
func TestRetriesRefusedOutOfRange(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	before := testkit.QueryOne[int](t, alice, "SELECT count(*)::int FROM lantern.tasks")
	for _, n := range []int{-1, 101} {
		_, err := alice.Exec(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1', retries => $1)", n)
		e := testkit.RequirePgError(t, err, "22023", "retries => %d", n)
		require.Equal(t, "retries must be between 0 and 100", e.Message)
		require.True(t, strings.HasPrefix(e.Detail, "retries is how many"), e.Detail)
	}
	require.Equal(t, before, testkit.QueryOne[int](t, alice, "SELECT count(*)::int FROM lantern.tasks"))
}

// TestAttemptsAreTheRolesOwn: another role sees none of a task's attempts.
func TestAttemptsAreTheRolesOwn(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	id := submitRetries(t, alice, alwaysFailing("40001"), 1)
	testkit.RequireFailed(t, alice, id)
	require.Len(t, attempts(t, alice, id), 2)
	require.Empty(t, attempts(t, testkit.Connect(t, "bob"), id), "bob reads alice's attempts")
}
