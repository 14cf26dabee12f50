package control

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoffHoldsBackRolesWhoseWorkersDieBeforeClaiming(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 4 * time.Second}
	failedStart := Exit{RoleID: roleA}

	b.Observe(failedStart, epoch)
	assert.True(t, b.Waiting(roleA, epoch.Add(999*time.Millisecond)))
	assert.False(t, b.Waiting(roleA, epoch.Add(time.Second)))
	assert.False(t, b.Waiting(roleB, epoch), "other roles are not held back")

	// Consecutive failures double the delay, up to Max.
	for _, want := range []time.Duration{2, 4, 4} {
		b.Observe(failedStart, epoch)
		assert.Equal(t, want*time.Second, b.Delay(roleA))
	}
}

func TestBackoffClearsOnProgress(t *testing.T) {
	for _, progress := range []Exit{{RoleID: roleA, Clean: true}, {RoleID: roleA, JobID: 12}} {
		b := Backoff{Min: time.Second, Max: time.Minute}
		b.Observe(Exit{RoleID: roleA}, epoch)
		require.True(t, b.Waiting(roleA, epoch))
		b.Observe(progress, epoch)
		assert.False(t, b.Waiting(roleA, epoch), "%+v", progress)
		assert.Zero(t, b.Delay(roleA))
	}
}

func TestDispatcherDoesNotRelaunchAFailingRoleAtOnce(t *testing.T) {
	c := newCluster()
	c.queues = []RoleQueue{queue("a", roleA, 1), queue("b", roleB, 1)}
	c.reaps = [][]Exit{{{RoleID: roleA}}}
	now := epoch
	d := &Dispatcher{Cluster: c, Log: &fakeLogger{}, Naptime: naptime,
		Backoff: Backoff{Min: time.Second, Max: time.Minute}, Now: func() time.Time { return now }}

	c.rounds = 1
	d.Run()
	assert.Equal(t, []uint32{roleB}, c.launches, "role a is held back after its worker died at start")

	now = now.Add(time.Second)
	c.rounds, c.waits, c.launches = 1, nil, nil
	d.Run()
	assert.Equal(t, []uint32{roleA, roleB}, c.launches)
}
