package bgworker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each call of Now advances the fake clock by a microsecond, and a Wait by
// its whole timeout: the phases add up to what the worker did, and the
// idle wait is not counted as busy.
func TestCostsCountPhasesAndLeaveOutIdleWaits(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"}, Task{JobID: 2, Query: "SELECT 2"})
	now := time.Unix(0, 0)
	f.worker.Now = func() time.Time { now = now.Add(time.Microsecond); return now }
	f.worker.IdleTimeout = func() time.Duration { return time.Second }
	f.worker.Wait = func(d time.Duration) bool { now = now.Add(d); return true }
	t0 := now

	require.NoError(t, f.worker.Run())
	c := f.worker.Costs()
	assert.Equal(t, 2, c.Tasks)
	assert.Equal(t, 3, c.Claims, "two that found a task and one that found none")
	assert.Zero(t, c.Records, "both outcomes went in with a claim")
	assert.Equal(t, 3, c.Checks, "a stop check before each claim (the fixture has no retire check)")
	assert.Greater(t, now.Sub(t0), time.Second)
	assert.Less(t, c.Busy, time.Millisecond, "the 1 s idle wait is not busy time")
	assert.Positive(t, c.Claim)
	assert.Positive(t, c.Execute)
	assert.Positive(t, c.Reset)
	assert.LessOrEqual(t, c.Claim+c.Execute+c.Reset+c.Check, c.Busy)
	assert.Contains(t, c.String(), "2 tasks, 3 claims; per task in µs: claim ")
}

func TestCostsStringWithoutTasks(t *testing.T) {
	assert.Equal(t, "no task run, 1 claims", Costs{Claims: 1}.String())
}
