package bgworker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// idleClock is a fake clock whose Wait advances time and can hand the
// worker new tasks, as a wake-up after a commit would.
type idleClock struct {
	now    time.Time
	waits  []time.Duration
	arrive map[int][]Task // tasks that arrive during the n-th wait
	queue  *fakeQueue
	stopAt int // Wait returns true (stop) on this wait, 0: never
}

func (c *idleClock) Now() time.Time { return c.now }

func (c *idleClock) Wait(d time.Duration) bool {
	c.waits = append(c.waits, d)
	n := len(c.waits)
	if tasks, ok := c.arrive[n]; ok {
		c.queue.tasks = append(c.queue.tasks, tasks...)
		c.now = c.now.Add(d / 2) // woken early
	} else {
		c.now = c.now.Add(d)
	}
	return n == c.stopAt
}

func idleFixture(timeout time.Duration, tasks ...Task) (*fixture, *idleClock) {
	f := newFixture(tasks...)
	clock := &idleClock{now: time.Unix(1000, 0), arrive: map[int][]Task{}, queue: f.queue}
	f.worker.IdleTimeout = func() time.Duration { return timeout }
	f.worker.Wait = clock.Wait
	f.worker.Now = clock.Now
	return f, clock
}

func TestIdleWorkerWaitsThenExits(t *testing.T) {
	f, clock := idleFixture(time.Second, Task{JobID: 1, Query: "SELECT 1"})
	require.NoError(t, f.worker.Run())
	assert.Equal(t, []time.Duration{time.Second}, clock.waits, "one wait for the whole idle timeout")
	assert.Equal(t, []int64{1}, f.queue.done)
}

func TestIdleWorkerRunsTasksThatArriveWhileWaiting(t *testing.T) {
	f, clock := idleFixture(time.Second)
	clock.arrive[1] = []Task{{JobID: 7, Query: "SELECT 7"}}
	require.NoError(t, f.worker.Run())
	assert.Equal(t, []int64{7}, f.queue.done, "the task that came during the wait ran in this worker")
	require.Len(t, clock.waits, 2)
	assert.Equal(t, time.Second, clock.waits[1], "idle time starts again after a task")
}

func TestIdleWaitCountsFromLastTask(t *testing.T) {
	f, clock := idleFixture(time.Second)
	clock.arrive[1] = nil // woken for nothing (another worker took the task)
	require.NoError(t, f.worker.Run())
	require.Len(t, clock.waits, 2)
	assert.Equal(t, 500*time.Millisecond, clock.waits[1], "a spurious wake-up does not extend the idle time")
}

func TestIdleWorkerStopsWhenAsked(t *testing.T) {
	f, clock := idleFixture(time.Minute)
	clock.stopAt = 1
	require.NoError(t, f.worker.Run())
	assert.Len(t, clock.waits, 1)
}

func TestRetiringWorkerLeavesBeforeClaiming(t *testing.T) {
	f, clock := idleFixture(time.Minute, Task{JobID: 1, Query: "SELECT 1"})
	f.worker.Retiring = func() bool { return true }
	require.NoError(t, f.worker.Run())
	assert.Zero(t, f.queue.claims, "a worker asked for its slot claims nothing more")
	assert.Empty(t, clock.waits)
}

func TestZeroIdleTimeoutExitsAtOnce(t *testing.T) {
	f, clock := idleFixture(0, Task{JobID: 1, Query: "SELECT 1"})
	require.NoError(t, f.worker.Run())
	assert.Empty(t, clock.waits)
	assert.Equal(t, []int64{1}, f.queue.done)
}

// A worker asked for its slot after a task records that task's outcome on
// its own before it leaves: there is no next claim to carry it.
func TestRetiringWorkerRecordsTheLastOutcomeAlone(t *testing.T) {
	f, _ := idleFixture(time.Minute, Task{JobID: 1, Query: "SELECT 1"}, Task{JobID: 2, Query: "SELECT 2"})
	f.worker.Retiring = func() bool { return len(f.session.executed) > 0 }
	require.NoError(t, f.worker.Run())
	assert.Equal(t, callLog{"claim 1", "execute SELECT 1", "reset", "settle 1", "done 1"}, f.log)
}

// A worker that ran out of tasks says so once per idle stretch, and only
// after a task: a spurious wake-up, or a worker that never ran one, does
// not.
func TestWorkerTellsWhenItWentIdle(t *testing.T) {
	f, clock := idleFixture(time.Second, Task{JobID: 1, Query: "SELECT 1"})
	clock.arrive[1] = nil                                   // woken for nothing
	clock.arrive[2] = []Task{{JobID: 2, Query: "SELECT 2"}} // then a task
	var idleAt []int                                        // waits before each call
	f.worker.WentIdle = func() { idleAt = append(idleAt, len(clock.waits)) }
	require.NoError(t, f.worker.Run())
	assert.Equal(t, []int64{1, 2}, f.queue.done)
	assert.Equal(t, []int{0, 2}, idleAt, "after task 1 and after task 2, not after the spurious wake-up")

	f, _ = idleFixture(time.Second)
	called := false
	f.worker.WentIdle = func() { called = true }
	require.NoError(t, f.worker.Run())
	assert.False(t, called, "a worker that found no task never went idle after one")
}
