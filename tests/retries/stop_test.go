package retries

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestCancelWhileWaitingStopsRetries: a task canceled while it waits for
// its next attempt ends canceled, and no attempt follows.
func TestCancelWhileWaitingStopsRetries(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	id := submitRetries(t, alice, alwaysFailing("40001"), 5)
	testkit.RequirePoll(t, testkit.WaitTimeout, "the first attempt recorded", func() (bool, string) {
		n := len(attempts(t, alice, id))
		return n >= 1, fmt.Sprintf("%d attempts", n)
	})
	testkit.RequireCancelTask(t, alice, id, true)
	testkit.RequireCanceled(t, alice, id, "57014")
	n := len(attempts(t, alice, id))
	// Longer than the backoff after any attempt so far, plus a late start.
	testkit.Never(t, maxBackoff(n)+lateStart, func() (bool, string) {
		m := len(attempts(t, alice, id))
		return m != n, fmt.Sprintf("%d attempts, %d at the cancel", m, n)
	}, "an attempt after the cancel")
}

// TestCancelWhileRunningStopsRetries: a cancel of a running attempt ends
// the task canceled, with that attempt recorded as canceled.
func TestCancelWhileRunningStopsRetries(t *testing.T) {
	testkit.Begin(t)
	bob := testkit.Connect(t, "bob")
	id := submitRetries(t, bob, "SELECT pg_sleep(30)", 5)
	testkit.RequirePoll(t, testkit.WaitTimeout, "the task running", func() (bool, string) {
		s := status(t, bob, id)
		return s == "running", s
	})
	testkit.RequireCancelTask(t, bob, id, true)
	testkit.RequireCanceled(t, bob, id, "57014")
	as := attempts(t, bob, id)
	require.Len(t, as, 1)
	require.Equal(t, "57014", testkit.Deref(as[0].SQLState))
}

// TestTimeoutStopsRetries: an attempt stopped by the task's timeout is
// not retried.
func TestTimeoutStopsRetries(t *testing.T) {
	testkit.Begin(t)
	carol := testkit.Connect(t, "carol")
	id := submitRetries(t, carol, "SELECT pg_sleep(30)", 5, "timeout => '200ms'")
	testkit.RequireFailedWithSQLState(t, carol, id, "57014")
	require.Len(t, attempts(t, carol, id), 1)
}

// TestTimeoutCountsPerAttempt: the task's timeout limits each attempt, not
// their sum: two attempts of 0.6 s each fit a 1 s timeout.
func TestTimeoutCountsPerAttempt(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	seq := newSequence(t, su, "alice")
	query := "SELECT pg_sleep(0.6); " + failingUntil(seq, 1, "40001")
	id := submitRetries(t, alice, query, 1, "timeout => '1s'")
	testkit.RequireSucceeded(t, alice, id)
	as := attempts(t, alice, id)
	require.Len(t, as, 2)
	require.Greater(t, as[0].Duration+as[1].Duration, time.Second, "together longer than the timeout")
}

// TestRetryAcrossRestart: a task waiting for its next attempt when the
// server restarts is retried afterwards, once per attempt: no attempt is
// lost or run twice.
func TestRetryAcrossRestart(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	bob := testkit.Connect(t, "bob")
	seq := newSequence(t, su, "bob")
	id := submitRetries(t, bob, failingUntil(seq, 2, "40001"), 3)
	testkit.RequirePoll(t, testkit.WaitTimeout, "the first attempt recorded", func() (bool, string) {
		n := len(attempts(t, bob, id))
		return n >= 1, fmt.Sprintf("%d attempts", n)
	})
	testkit.RestartServer(t)
	bob = testkit.Connect(t, "bob")
	testkit.RequireSucceeded(t, bob, id)
	as := attempts(t, bob, id)
	require.Len(t, as, 3, "attempts of task %d", id)
	require.Equal(t, int64(3), testkit.QueryOne[int64](t, testkit.Connect(t, testkit.Superuser), fmt.Sprintf("SELECT last_value FROM %s", seq)),
		"each attempt ran once")
}
