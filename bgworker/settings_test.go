package bgworker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A claim that finds the role's or database's settings changed since the
// session logged in has recorded the previous outcome and left its task
// pending: the worker exits cleanly at once, runs nothing more and records
// nothing twice, so that a new session takes the task.
func TestRunExitsWhenSettingsChanged(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"}, Task{JobID: 2, Query: "SELECT 2"})
	f.queue.staleAfter = 1
	waits := 0
	f.worker.IdleTimeout = func() time.Duration { return time.Hour }
	f.worker.Wait = func(time.Duration) bool { waits++; return false }

	require.NoError(t, f.worker.Run())
	assert.Equal(t, callLog{
		"claim 1", "execute SELECT 1", "reset",
		"settle 1 with the claim", "claim: settings changed",
	}, f.log)
	assert.Equal(t, []int64{1}, f.queue.done)
	assert.Zero(t, waits, "no idle wait: the task is waiting for a new session")
}
