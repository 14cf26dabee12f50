package bgworker

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/bgworker/pgerr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLimitOf(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration // the task's own
		setting time.Duration // lantern_async.task_timeout
		want    Limit
	}{
		{"none", 0, 0, Limit{}},
		{"the setting", 0, 2 * time.Second, Limit{Duration: 2 * time.Second}},
		{"its own, no setting", time.Minute, 0, Limit{Duration: time.Minute, PerTask: true}},
		{"its own, shorter than the setting", time.Second, time.Minute, Limit{Duration: time.Second, PerTask: true}},
		{"its own, longer than the setting", time.Hour, time.Minute, Limit{Duration: time.Hour, PerTask: true}},
		{"a setting below zero is none", 0, -time.Second, Limit{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, LimitOf(Task{JobID: 1, Timeout: tt.timeout}, tt.setting))
		})
	}
}

func TestMicrosecondsSaturates(t *testing.T) {
	assert.Equal(t, time.Duration(0), Microseconds(0))
	assert.Equal(t, 1500*time.Millisecond, Microseconds(1_500_000))
	assert.Equal(t, time.Microsecond, Microseconds(1))
	// A '1000 years' timeout does not wrap around into the past.
	assert.Equal(t, time.Duration(math.MaxInt64), Microseconds(1000*365*24*3600*1_000_000))
	assert.Equal(t, time.Duration(math.MaxInt64), Microseconds(math.MaxInt64))
	assert.Equal(t, time.Duration(math.MinInt64), Microseconds(math.MinInt64))
}

// The worker hands each task its limit: its own timeout, else the setting
// as read when that task starts (after the previous task's reset).
func TestRunGivesEachTaskItsLimit(t *testing.T) {
	f := newFixture(
		Task{JobID: 1, Query: "SELECT 1"},
		Task{JobID: 2, Query: "SELECT 2", Timeout: 30 * time.Second},
		Task{JobID: 3, Query: "SELECT 3"},
		Task{JobID: 4, Query: "SELECT 4"},
	)
	settings := []time.Duration{time.Second, time.Second, 0, 5 * time.Second}
	reads := 0
	f.worker.TaskTimeout = func() time.Duration {
		// Read once the task is claimed: after the previous task's reset.
		require.Equal(t, "claim "+strconv.Itoa(reads+1), f.log[len(f.log)-1], "call log %v", f.log)
		d := settings[reads]
		reads++
		return d
	}

	require.NoError(t, f.worker.Run())
	assert.Equal(t, []Limit{
		{Duration: time.Second},
		{Duration: 30 * time.Second, PerTask: true},
		{},
		{Duration: 5 * time.Second},
	}, f.session.limits)
	assert.Equal(t, 4, reads, "the setting is read once per task")
}

func TestRunWithoutTaskTimeoutHasNoLimit(t *testing.T) {
	f := newFixture(Task{JobID: 1, Query: "SELECT 1"}, Task{JobID: 2, Query: "SELECT 2", Timeout: time.Second})
	require.NoError(t, f.worker.Run())
	assert.Equal(t, []Limit{{}, {Duration: time.Second, PerTask: true}}, f.session.limits)
}

// A task stopped by its limit is an ordinary failure: its error as the
// session reports it, not a cancel, unless cancel_task() had accepted one.
func TestRunRecordsATimedOutTaskAsFailed(t *testing.T) {
	timedOut := &pgerr.Error{
		Severity: "ERROR", Code: "57014", Message: "canceling task due to task timeout",
		Detail: "The task ran for longer than its time limit of 00:00:02 (lantern_async.task_timeout).",
	}
	f := newFixture(Task{JobID: 1, Query: "SELECT pg_sleep(3)"}, Task{JobID: 2, Query: "SELECT pg_sleep(4)"})
	f.worker.TaskTimeout = func() time.Duration { return 2 * time.Second }
	f.session.results["SELECT pg_sleep(3)"] = timedOut
	f.session.results["SELECT pg_sleep(4)"] = timedOut
	f.queue.canceled = map[int64]bool{2: true}

	require.NoError(t, f.worker.Run())
	require.Len(t, f.queue.settled, 2)
	assert.Equal(t, Outcome{
		JobID: 1, Status: Failed, SQLState: "57014",
		Message: "ERROR:  canceling task due to task timeout\n" +
			"DETAIL:  The task ran for longer than its time limit of 00:00:02 (lantern_async.task_timeout).",
	}, f.queue.settled[0])
	assert.Equal(t, CanceledOutcome(Task{JobID: 2}), f.queue.settled[1], "a cancel accepted first wins")
}
