package control

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLimiterBurstThenOnePerInterval(t *testing.T) {
	l := Limiter{Burst: 3, Interval: time.Second}
	for i := range 3 {
		require.True(t, l.Allow(roleA, epoch), "launch %d of the burst", i+1)
	}
	assert.False(t, l.Allow(roleA, epoch), "the burst is spent")
	assert.Equal(t, epoch.Add(time.Second), l.Next(roleA))
	assert.False(t, l.Allow(roleA, epoch.Add(999*time.Millisecond)))
	assert.True(t, l.Allow(roleA, epoch.Add(time.Second)))
	assert.False(t, l.Allow(roleA, epoch.Add(time.Second)), "one per interval after the burst")
}

func TestLimiterRolesAreIndependent(t *testing.T) {
	l := Limiter{Burst: 1, Interval: time.Minute}
	require.True(t, l.Allow(roleA, epoch))
	assert.False(t, l.Allow(roleA, epoch))
	assert.True(t, l.Allow(roleB, epoch), "another role is not held back")
}

func TestLimiterRefillsAfterQuiet(t *testing.T) {
	l := Limiter{Burst: 2, Interval: time.Second}
	require.True(t, l.Allow(roleA, epoch))
	require.True(t, l.Allow(roleA, epoch))
	later := epoch.Add(time.Hour)
	assert.True(t, l.Allow(roleA, later))
	assert.True(t, l.Allow(roleA, later), "a quiet role gets its whole burst back")
	assert.False(t, l.Allow(roleA, later))
}

func TestLimiterZeroIntervalAllowsAll(t *testing.T) {
	var l Limiter
	for range 100 {
		require.True(t, l.Allow(roleA, epoch))
	}
}

// A launch the limiter holds back is not lost: the dispatcher naps only
// until it may go, then launches it.
func TestDispatcherWakesForDeferredLaunch(t *testing.T) {
	c := newCluster()
	c.capacity = 4
	c.queues = []RoleQueue{queue("a", roleA, 3)}
	c.rounds = 1
	d := &Dispatcher{Cluster: c, Log: &fakeLogger{}, Naptime: naptime, Now: fixedNow,
		Limiter: Limiter{Burst: 1, Interval: 300 * time.Millisecond}}
	d.Run()
	assert.Equal(t, []uint32{roleA}, c.launches, "one launch in the burst, two held back")
	require.Len(t, c.waits, 1)
	assert.Equal(t, 300*time.Millisecond, c.waits[0], "nap until the held-back launch may go")
}
