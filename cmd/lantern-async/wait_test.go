package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseJobIDs(t *testing.T) {
	ids, err := parseJobIDs([]string{"3", "1", "3"})
	require.NoError(t, err)
	assert.Equal(t, []int64{3, 1}, ids)
	for _, bad := range []string{"x", "-1", "0", "1.5", ""} {
		_, err := parseJobIDs([]string{bad})
		assert.Error(t, err, bad)
	}
}

func TestWaitPlainLines(t *testing.T) {
	db := &fakeStore{frames: []map[int64]taskState{
		{7: {JobID: 7, Visible: true, Status: "pending"}},
		{7: {JobID: 7, Visible: true, Status: "running", Progress: &progress{Elapsed: time.Second}}},
		{7: running(7, "building index: scanning table", 10, 2*time.Second)},
		{7: running(7, "building index: scanning table", 60, 3*time.Second)},
		{7: running(7, "building index: loading tuples in tree", 5, 4*time.Second)},
		{7: ended(7, "succeeded", 3200*time.Millisecond)},
	}}
	r := runWith(t, db, "", false, "wait", "7")
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, `task 7 running
task 7 running: CREATE INDEX, building index: scanning table
task 7 running: CREATE INDEX, building index: loading tuples in tree
task 7 succeeded in 3.2s
`, r.stdout)
	assert.Empty(t, r.stderr)
	assert.Equal(t, []int64{7, 7, 7, 7, 7, 7}, db.waits, "wait_task is called on the task every round")
}

func TestWaitSeveralTasksExitStatus(t *testing.T) {
	failed := ended(2, "failed", time.Second)
	failed.ErrorMessage = "ERROR:  column \"haha\" does not exist\nLINE 1: SELECT pg_sleep(haha);\n                        ^"
	failed.SQLState = "42703"
	db := &fakeStore{frames: []map[int64]taskState{
		{1: {JobID: 1, Visible: true, Status: "pending"}, 2: failed, 3: {JobID: 3}},
		{1: ended(1, "succeeded", 40*time.Millisecond)},
	}}
	r := runWith(t, db, "", false, "wait", "1", "2", "3")
	assert.Equal(t, exitTask, r.code)
	assert.Equal(t, `task 2 failed: ERROR:  column "haha" does not exist (SQLSTATE 42703)
LINE 1: SELECT pg_sleep(haha);
                        ^
task 3 not found: it does not exist or belongs to another role
task 1 succeeded in 40ms
`, r.stdout)
	assert.Equal(t, []int64{1, 1}, db.waits, "wait_task waits for the first unfinished task")
}

func TestWaitInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := &fakeStore{
		frames: []map[int64]taskState{{
			4: {JobID: 4, Visible: true, Status: "running"},
			5: {JobID: 5, Visible: true, Status: "pending"},
		}},
		onWait: func(n int, ctx context.Context) error {
			if n == 3 {
				cancel() // Ctrl-C while wait_task sleeps
				<-ctx.Done()
				return wrapDB("", ctx.Err())
			}
			return nil
		},
	}
	r := runCtx(t, ctx, db, "", false, "wait", "4", "5")
	assert.Equal(t, exitInterrupted, r.code)
	assert.Equal(t, "task 4 running\n", r.stdout)
	assert.Equal(t, "stopped waiting; tasks 4, 5 keep running. To cancel them: lantern-async cancel 4 5\n", r.stderr)
	assert.Equal(t, "stopped waiting; task 42 keeps running. To cancel it: lantern-async cancel 42",
		interruptMessage([]int64{42}))
}

func TestWaitTerminalBar(t *testing.T) {
	db := &fakeStore{frames: []map[int64]taskState{
		{7: {JobID: 7, Visible: true, Status: "pending"}},
		{7: running(7, "building index: scanning table", 10, 2*time.Second)},
		{7: running(7, "building index: scanning table", 20, 3*time.Second)},
		{7: running(7, "building index: scanning table", 30, 4*time.Second)},
		{7: ended(7, "succeeded", 5*time.Second)},
	}}
	r := runWith(t, db, "", true, "wait", "7")
	assert.Equal(t, exitOK, r.code, r.stderr)
	out := r.stdout
	assert.Contains(t, out, "task 7 pending")
	assert.Regexp(t, regexp.MustCompile(`30% \|[^|]*\|\s+task 7 building index: scanning table, 4\.0s elapsed, about 7s left in this phase`), out)
	assert.True(t, strings.HasSuffix(out, "task 7 succeeded in 5.0s\n"), "%q", out)
	assert.Contains(t, out, "\r", "the bar redraws its line")
}

func TestOutcomeLine(t *testing.T) {
	assert.Equal(t, "task 9 succeeded in 850ms", outcomeLine(ended(9, "succeeded", 850*time.Millisecond)))
	assert.Equal(t, "task 9 canceled after 1m05s", outcomeLine(ended(9, "canceled", 65*time.Second)))
	f := ended(9, "failed", 0)
	f.ErrorMessage, f.SQLState = "ERROR:  division by zero", "22012"
	assert.Equal(t, "task 9 failed: ERROR:  division by zero (SQLSTATE 22012)", outcomeLine(f))
	assert.Equal(t, "task 9 has no status: it is not a task lantern_async runs", outcomeLine(taskState{JobID: 9, Visible: true}))
}

func TestEstimator(t *testing.T) {
	var e estimator
	_, ok := e.observe("scan", 2*time.Second, 10)
	assert.False(t, ok, "first sample of a phase")
	_, ok = e.observe("scan", 2500*time.Millisecond, 20)
	assert.False(t, ok, "under a second of the phase")
	left, ok := e.observe("scan", 4*time.Second, 30) // 20 points in 2s: 70 more in 7s
	require.True(t, ok)
	assert.Equal(t, 7*time.Second, left)

	_, ok = e.observe("load", 5*time.Second, 1)
	assert.False(t, ok, "a new phase starts over")
	_, ok = e.observe("load", 7*time.Second, 1)
	assert.False(t, ok, "no movement, no estimate")
	left, ok = e.observe("load", 9*time.Second, 51) // 50 points in 4s
	require.True(t, ok)
	assert.Equal(t, 3920*time.Millisecond, left)

	_, ok = e.observe("load", 10*time.Second, 40)
	assert.False(t, ok, "a percent that went back starts over")
}
