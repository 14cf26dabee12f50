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

// A worker that finds nothing it can claim (a user holds the role's
// pending rows locked) exits cleanly having run nothing: relaunching it at
// once would make the server fork in a loop.
func TestBackoffHoldsBackCleanExitsThatRanNothing(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 8 * time.Second}
	ranNothing := Exit{RoleID: roleA, Clean: true}

	for _, want := range []time.Duration{1, 2, 4, 8, 8} {
		b.Observe(ranNothing, epoch)
		assert.Equal(t, want*time.Second, b.Delay(roleA))
		assert.True(t, b.Waiting(roleA, epoch.Add(want*time.Second-time.Millisecond)))
		assert.False(t, b.Waiting(roleA, epoch.Add(want*time.Second)))
	}
}

func TestBackoffClearsOnlyOnProductiveExit(t *testing.T) {
	tests := []struct {
		name  string
		exit  Exit
		clear bool
	}{
		{name: "clean after running tasks", exit: Exit{RoleID: roleA, Clean: true, TasksRun: 3}, clear: true},
		{name: "died before claiming", exit: Exit{RoleID: roleA}},
		{name: "clean but ran nothing", exit: Exit{RoleID: roleA, Clean: true}},
		{name: "died mid-task", exit: Exit{RoleID: roleA, JobID: 12}},
		{name: "died mid-task after running others", exit: Exit{RoleID: roleA, JobID: 12, TasksRun: 5}},
		{name: "died between tasks", exit: Exit{RoleID: roleA, TasksRun: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := Backoff{Min: time.Second, Max: time.Minute}
			b.Observe(Exit{RoleID: roleA}, epoch)
			require.Equal(t, time.Second, b.Delay(roleA))

			b.Observe(tc.exit, epoch)
			if tc.clear {
				assert.False(t, b.Waiting(roleA, epoch))
				assert.Zero(t, b.Delay(roleA))
				return
			}
			assert.True(t, b.Waiting(roleA, epoch))
			assert.Equal(t, 2*time.Second, b.Delay(roleA), "doubled")
		})
	}
}

func TestBackoffNextExpiry(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Minute}
	_, ok := b.NextExpiry(epoch)
	assert.False(t, ok, "nothing held back yet")

	b.Observe(Exit{RoleID: roleA}, epoch)                  // until epoch+1s
	b.Observe(Exit{RoleID: roleB}, epoch.Add(time.Second)) // until epoch+2s
	b.Observe(Exit{RoleID: roleC}, epoch.Add(-time.Hour))  // long over
	for _, tc := range []struct {
		now  time.Time
		want time.Time
		ok   bool
	}{
		{now: epoch, want: epoch.Add(time.Second), ok: true},
		{now: epoch.Add(time.Second), want: epoch.Add(2 * time.Second), ok: true},
		{now: epoch.Add(2 * time.Second), ok: false},
	} {
		next, ok := b.NextExpiry(tc.now)
		assert.Equal(t, tc.ok, ok, "at %v", tc.now)
		assert.Equal(t, tc.want, next, "at %v", tc.now)
	}

	b.Observe(Exit{RoleID: roleA, Clean: true, TasksRun: 1}, epoch)
	next, ok := b.NextExpiry(epoch)
	assert.True(t, ok)
	assert.Equal(t, epoch.Add(2*time.Second), next, "role a's cleared hold-back is gone")
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
	assert.Equal(t, []time.Duration{time.Second}, c.waits, "woken when the hold-back ends")

	now = now.Add(time.Second)
	c.rounds, c.waits, c.launches = 1, nil, nil
	d.Run()
	assert.Equal(t, []uint32{roleA, roleB}, c.launches)
	assert.Equal(t, []time.Duration{naptime}, c.waits)
}

func TestDispatcherHoldsBackOnlyAfterUnproductiveExits(t *testing.T) {
	tests := []struct {
		name     string
		exit     Exit
		launches []uint32
		logged   bool
	}{
		{name: "clean but ran nothing", exit: Exit{RoleID: roleA, Clean: true},
			launches: []uint32{roleB}, logged: true},
		{name: "died mid-task", exit: Exit{RoleID: roleA, JobID: 4, TasksRun: 2},
			launches: []uint32{roleB}, logged: true},
		{name: "clean after running tasks", exit: Exit{RoleID: roleA, Clean: true, TasksRun: 2},
			launches: []uint32{roleA, roleB}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.queues = []RoleQueue{queue("a", roleA, 1), queue("b", roleB, 1)}
			c.reaps = [][]Exit{{tc.exit}}
			log := &fakeLogger{}
			d := &Dispatcher{Cluster: c, Log: log, Naptime: naptime,
				Backoff: Backoff{Min: time.Second, Max: time.Minute}, Now: fixedNow}

			d.Run()
			assert.Equal(t, tc.launches, c.launches)
			if !tc.logged {
				assert.Empty(t, log.lines)
				return
			}
			require.Len(t, log.lines, 1)
			assert.Contains(t, log.lines[0], "ended without finishing a task; next launch for that role in 1s")
		})
	}
}

func TestDispatcherNap(t *testing.T) {
	tests := []struct {
		name     string
		backoff  time.Duration // Min of a role that just failed; 0 for none
		wantWait time.Duration
	}{
		{name: "no backoff waits the naptime", wantWait: time.Second},
		{name: "shorter backoff shortens the wait", backoff: 250 * time.Millisecond, wantWait: 250 * time.Millisecond},
		{name: "longer backoff waits the naptime", backoff: 5 * time.Second, wantWait: time.Second},
		{name: "sub-millisecond backoff waits 1ms", backoff: 100 * time.Microsecond, wantWait: time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			if tc.backoff > 0 {
				c.reaps = [][]Exit{{{RoleID: roleA}}}
			}
			d := &Dispatcher{Cluster: c, Log: &fakeLogger{}, Naptime: time.Second,
				Backoff: Backoff{Min: tc.backoff, Max: time.Minute}, Now: fixedNow}

			d.Run()
			assert.Equal(t, []time.Duration{tc.wantWait}, c.waits)
		})
	}
}
