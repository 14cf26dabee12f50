package bgworker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// While the queue's table cannot be locked, the outcome is tried again
// after each wait (first alone, at once, when it could not go in with the
// next claim); once it is recorded the worker goes on.
func TestBlockedSettleIsRetried(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"}, Task{JobID: 2, Query: "SELECT 2"})
	f.queue.blockedSettles = 3
	var waits []time.Duration
	f.worker.BlockedRetry = time.Second
	f.worker.BlockedGrace = time.Hour
	f.worker.Wait = func(d time.Duration) bool { waits = append(waits, d); return false }
	require.NoError(t, f.worker.Run())
	assert.Equal(t, []int64{1, 2}, f.queue.done)
	assert.Equal(t, []time.Duration{time.Second, time.Second}, waits[:2], "one wait per blocked try")
	assert.Empty(t, f.queue.parked)
	assert.Len(t, f.queue.settled, 2)
}

// A worker whose slot is wanted elsewhere does not wait for the lock: it
// parks the outcome with its slot and exits, without marking the task done.
func TestBlockedSettleParksWhenTheSlotIsWanted(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"}, Task{JobID: 2, Query: "SELECT 2"})
	f.queue.blockedSettles = 100
	retiring := false
	f.worker.Retiring = func() bool { return retiring }
	f.worker.BlockedRetry = time.Second
	f.worker.BlockedGrace = time.Hour
	f.worker.Wait = func(time.Duration) bool { retiring = true; return false }
	require.NoError(t, f.worker.Run())
	require.Len(t, f.queue.parked, 1)
	assert.Equal(t, int64(1), f.queue.parked[0].JobID)
	assert.Equal(t, Succeeded, f.queue.parked[0].Status)
	assert.Empty(t, f.queue.done, "the parked task stays in the slot")
	assert.Len(t, f.queue.tasks, 1, "no further task is claimed")
}

// Asked to stop while blocked, the worker parks too.
func TestBlockedSettleParksOnStop(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"})
	f.queue.blockedSettles = 100
	f.worker.BlockedRetry = time.Second
	f.worker.BlockedGrace = time.Hour
	f.worker.Wait = func(time.Duration) bool { return true }
	require.NoError(t, f.worker.Run())
	assert.Len(t, f.queue.parked, 1)
	assert.Empty(t, f.queue.done)
}

// Nobody wants the slot, and the table stays locked (a lock request
// queued on it waits as long as its session likes): the worker parks the
// outcome after BlockedGrace all the same, says so in one line, and
// exits. Before, it kept its slot, and logged an ERROR every try, for as
// long as the lock request waited.
func TestBlockedSettleParksAfterTheGrace(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"}, Task{JobID: 2, Query: "SELECT 2"})
	f.queue.blockedSettles = 1000
	now := time.Unix(0, 0)
	f.worker.Now = func() time.Time { return now }
	f.worker.BlockedRetry = 100 * time.Millisecond
	f.worker.BlockedGrace = time.Second
	var waits []time.Duration
	f.worker.Wait = func(d time.Duration) bool { waits = append(waits, d); now = now.Add(d); return false }
	require.NoError(t, f.worker.Run())
	require.Len(t, f.queue.parked, 1)
	assert.Equal(t, int64(1), f.queue.parked[0].JobID)
	assert.Len(t, waits, 10, "tries every 100 ms for 1 s")
	assert.Empty(t, f.queue.done)
	assert.Len(t, f.queue.tasks, 1, "no further task is claimed")
	lines := f.worker.Log.(*fakeLogger).lines
	require.Len(t, lines, 1, "one log line, when it parks")
	assert.Contains(t, lines[0], "left the outcome of task 1 for a scout")
}

// A claim that fails (not for the lock) changed nothing: the outcome that
// was to go in with it is recorded alone before the worker exits, rather
// than left to a scout as if the worker had died.
func TestFailedClaimRecordsTheFinishedOutcome(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"})
	f.queue.claimErrAfter = 1
	f.queue.claimErr = assert.AnError
	require.ErrorIs(t, f.worker.Run(), assert.AnError)
	assert.Equal(t, callLog{"claim 1", "execute SELECT 1", "reset", "claim: error", "settle 1", "done 1"}, f.log)
}

// Any other error of Settle still ends the worker with that error.
func TestOtherSettleErrorsAreNotRetried(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"})
	f.queue.settleErr = assert.AnError
	f.worker.Wait = func(time.Duration) bool { t.Fatal("no wait"); return false }
	require.ErrorIs(t, f.worker.Run(), assert.AnError)
	assert.Empty(t, f.queue.parked)
}

// A claim that could not lock the queue's table is tried again after
// BlockedRetry, not taken for a broken worker (autovacuum truncating the
// table takes that lock for a moment).
func TestBlockedClaimIsRetried(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"})
	f.queue.blockedClaims = 2
	var waits []time.Duration
	f.worker.IdleTimeout = func() time.Duration { return time.Hour }
	f.worker.BlockedRetry = 100 * time.Millisecond
	f.worker.Wait = func(d time.Duration) bool { waits = append(waits, d); return len(waits) > 2 }
	require.NoError(t, f.worker.Run())
	assert.Equal(t, []int64{1}, f.queue.done, "the task is run once the table can be locked")
	assert.Equal(t, 100*time.Millisecond, waits[0], "a blocked claim waits BlockedRetry, not the idle timeout")
	assert.Equal(t, 100*time.Millisecond, waits[1])
}

// While claims stay blocked the worker still leaves after its idle timeout.
func TestBlockedClaimsEndAtTheIdleTimeout(t *testing.T) {
	f := newFixture()
	f.queue.blockedClaims = 1000
	now := time.Unix(0, 0)
	f.worker.Now = func() time.Time { return now }
	f.worker.IdleTimeout = func() time.Duration { return time.Second }
	f.worker.BlockedRetry = 300 * time.Millisecond
	f.worker.Wait = func(d time.Duration) bool { now = now.Add(d); return false }
	require.NoError(t, f.worker.Run())
	assert.Equal(t, 5, f.queue.claims, "claims at 0, 0.3, 0.6, 0.9 and 1.0 s, then it exits")
}

// An outcome that could not go in with the next claim is recorded alone
// at once, and the claim is tried again after it, without a wait.
func TestBlockedClaimWithAnOutcomeRecordsItAlone(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"}, Task{JobID: 2, Query: "SELECT 2"})
	f.queue.blockedSettles = 1
	f.worker.Wait = func(time.Duration) bool { t.Fatal("no wait"); return false }
	require.NoError(t, f.worker.Run())
	assert.Equal(t, callLog{
		"claim 1", "execute SELECT 1", "reset",
		"settle 1 with the claim: blocked", "settle 1", "done 1",
		"claim 2", "execute SELECT 2", "reset",
		"settle 2 with the claim", "claim: none",
	}, f.log)
}
