package control

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoffHoldsBackRolesWhoseWorkersDieBeforeClaiming(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 4 * time.Second}
	failedStart := Exit{Key: keyA}

	b.Observe(failedStart, epoch)
	assert.True(t, b.Waiting(keyA, epoch.Add(999*time.Millisecond)))
	assert.False(t, b.Waiting(keyA, epoch.Add(time.Second)))
	assert.False(t, b.Waiting(keyB, epoch), "other roles are not held back")

	// Consecutive failures double the delay, up to Max.
	for _, want := range []time.Duration{2, 4, 4} {
		b.Observe(failedStart, epoch)
		assert.Equal(t, want*time.Second, b.Delay(keyA))
	}
}

// A worker that finds nothing it can claim (a user holds the role's
// pending rows locked) exits cleanly having run nothing: relaunching it at
// once would make the server fork in a loop.
func TestBackoffHoldsBackCleanExitsThatRanNothing(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 8 * time.Second}
	ranNothing := Exit{Key: keyA, Clean: true}

	for _, want := range []time.Duration{1, 2, 4, 8, 8} {
		b.Observe(ranNothing, epoch)
		assert.Equal(t, want*time.Second, b.Delay(keyA))
		assert.True(t, b.Waiting(keyA, epoch.Add(want*time.Second-time.Millisecond)))
		assert.False(t, b.Waiting(keyA, epoch.Add(want*time.Second)))
	}
}

func TestBackoffClearsOnlyOnProductiveExit(t *testing.T) {
	tests := []struct {
		name  string
		exit  Exit
		clear bool
	}{
		{name: "clean after running tasks", exit: Exit{Key: keyA, Clean: true, TasksRun: 3}, clear: true},
		{name: "died before claiming", exit: Exit{Key: keyA}},
		{name: "clean but ran nothing", exit: Exit{Key: keyA, Clean: true}},
		{name: "died mid-task", exit: Exit{Key: keyA, JobID: 12}},
		{name: "died mid-task after running others", exit: Exit{Key: keyA, JobID: 12, TasksRun: 5}},
		{name: "died between tasks", exit: Exit{Key: keyA, TasksRun: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := Backoff{Min: time.Second, Max: time.Minute}
			b.Observe(Exit{Key: keyA}, epoch)
			require.Equal(t, time.Second, b.Delay(keyA))

			b.Observe(tc.exit, epoch)
			if tc.clear {
				assert.False(t, b.Waiting(keyA, epoch))
				assert.Zero(t, b.Delay(keyA))
				return
			}
			assert.True(t, b.Waiting(keyA, epoch))
			assert.Equal(t, 2*time.Second, b.Delay(keyA), "doubled")
		})
	}
}

// A worker the launcher (or the database guard) asked to give its slot up
// may leave before its first claim: that is the launcher's choice, not a
// failed start, so it neither holds the key back nor lifts a hold-back.
func TestBackoffIgnoresCleanRetirementsThatRanNothing(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Minute}
	retired := Exit{Key: keyA, Clean: true, Retired: true}
	assert.False(t, b.Observe(retired, epoch))
	assert.False(t, b.Waiting(keyA, epoch))

	require.True(t, b.Observe(Exit{Key: keyA}, epoch))
	assert.False(t, b.Observe(retired, epoch))
	assert.True(t, b.Waiting(keyA, epoch), "the earlier failure still holds the key back")
	assert.Equal(t, time.Second, b.Delay(keyA), "not doubled")
}

func TestBackoffNextExpiry(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Minute}
	_, ok := b.NextExpiry(epoch)
	assert.False(t, ok, "nothing held back yet")

	b.Observe(Exit{Key: keyA}, epoch)                  // until epoch+1s
	b.Observe(Exit{Key: keyB}, epoch.Add(time.Second)) // until epoch+2s
	b.Observe(Exit{Key: keyC}, epoch.Add(-time.Hour))  // long over
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

	b.Observe(Exit{Key: keyA, Clean: true, TasksRun: 1}, epoch)
	next, ok := b.NextExpiry(epoch)
	assert.True(t, ok)
	assert.Equal(t, epoch.Add(2*time.Second), next, "role a's cleared hold-back is gone")
}
