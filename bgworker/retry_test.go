package bgworker

import (
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/bgworker/pgerr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoffDoublesFromASecondUpToFiveMinutes(t *testing.T) {
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range want {
		assert.Equal(t, w*time.Second, Backoff(i+1, 0.5), "after attempt %d, no jitter", i+1)
	}
	assert.Equal(t, 300*time.Second, Backoff(1000, 0.5), "a large attempt does not overflow")
	assert.Equal(t, 750*time.Millisecond, Backoff(1, 0), "jitter's low end")
	assert.Equal(t, 1249*time.Millisecond, Backoff(1, 0.999).Truncate(time.Millisecond), "jitter's high end")
}

// retryFixture runs one task that fails with code on its attempt-th
// attempt of 1+retries, at a fixed clock and jitter.
func retryFixture(code string, attempt, retries int) (*fixture, time.Time) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	task := Task{JobID: 7, Query: "q", Attempt: attempt, Retries: retries}
	f := newFixture(task)
	f.session.results["q"] = &pgerr.Error{Severity: "ERROR", Code: code, Message: "m"}
	f.worker.Now = func() time.Time { return now }
	f.worker.Jitter = func() float64 { return 0.5 }
	return f, now
}

func TestTransientFailureWithAttemptsLeftIsRetried(t *testing.T) {
	for _, code := range []string{"40001", "40P01", "55P03"} {
		f, now := retryFixture(code, 2, 3)
		require.NoError(t, f.worker.Run())
		require.Len(t, f.queue.settled, 1)
		o := f.queue.settled[0]
		assert.Equal(t, Pending, o.Status, code)
		assert.Equal(t, now.Add(2*time.Second), o.Due, "%s: the backoff after attempt 2", code)
		assert.Equal(t, code, o.SQLState, "the attempt's error, for its row")
		assert.Equal(t, 2, o.Attempt, "the attempt's row")
		assert.Equal(t, now, o.Started)
	}
}

func TestFailureIsFinal(t *testing.T) {
	cases := []struct {
		name              string
		code              string
		attempt, retries  int
		committed         bool
		canceled          bool
		wantStatus        Status
		wantNotRetriedMsg bool
	}{
		{name: "not transient", code: "22012", attempt: 1, retries: 3, wantStatus: Failed},
		{name: "a cancel or timeout", code: "57014", attempt: 1, retries: 3, wantStatus: Failed},
		{name: "last attempt", code: "40001", attempt: 4, retries: 3, wantStatus: Failed},
		{name: "no retries", code: "40001", attempt: 1, retries: 0, wantStatus: Failed},
		{name: "work committed", code: "40001", attempt: 1, retries: 3, committed: true,
			wantStatus: Failed, wantNotRetriedMsg: true},
		{name: "canceled by lantern.cancel_task()", code: "40001", attempt: 1, retries: 3, canceled: true,
			wantStatus: Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := retryFixture(tc.code, tc.attempt, tc.retries)
			f.session.commits = map[string]bool{"q": tc.committed}
			f.queue.canceled = map[int64]bool{7: tc.canceled}
			require.NoError(t, f.worker.Run())
			require.Len(t, f.queue.settled, 1)
			o := f.queue.settled[0]
			assert.Equal(t, tc.wantStatus, o.Status)
			assert.True(t, o.Due.IsZero(), "no next attempt")
			assert.Equal(t, tc.wantNotRetriedMsg, strings.Contains(o.Message, "did not retry"), o.Message)
			assert.Equal(t, tc.retries > 0, o.Attempt == tc.attempt, "an attempt's row when the task has retries")
		})
	}
}

// A retry that cannot be recorded in time is parked as the final failure:
// a scout records final outcomes only.
func TestParkedRetryIsFinal(t *testing.T) {
	f, _ := retryFixture("40001", 1, 3)
	f.queue.blockedSettles = 1000
	f.worker.BlockedGrace = 0
	require.NoError(t, f.worker.Run())
	require.Len(t, f.queue.parked, 1)
	o := f.queue.parked[0]
	assert.Equal(t, Failed, o.Status)
	assert.True(t, o.Due.IsZero())
	assert.Contains(t, o.Message, "did not retry the task: its outcome could not be recorded in time")
}
