package delayed

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestCancelWhileWaiting: a task waiting for its time is canceled at once
// and leaves the claims' queue; nothing starts for it.
func TestCancelWhileWaiting(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	d := testkit.SubmitTimedAfter(t, alice, testkit.StartTable(t, su, "alice"), time.Hour)
	require.Equal(t, "pending", status(t, alice, d))
	require.True(t, testkit.QueryOne[bool](t, alice, "SELECT lantern.cancel_task($1)", d.ID), "cancel_task of a waiting task")
	require.Equal(t, "canceled", status(t, alice, d))
	require.Equal(t, 0, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.task_owners WHERE jobid = $1 AND due IS NOT NULL", d.ID),
		"the canceled task's entry in the claims' queue")
}

// TestRunAfterSurvivesRestart: a task waiting for its time when the server
// restarts starts at its time afterwards (the start sweep's scout notes
// when it is due), not before.
func TestRunAfterSurvivesRestart(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	d := testkit.SubmitTimedAfter(t, testkit.Connect(t, "bob"), testkit.StartTable(t, su, "bob"), 6*time.Second)
	testkit.RestartServer(t)
	bob := testkit.Connect(t, "bob")
	require.Equal(t, "pending", status(t, bob, d), "after the restart, before its time")
	late := d.StartedAt(t, bob, testkit.WaitTimeout).Sub(d.RunAfter)
	t.Logf("task %d started %v after its run_after, across a restart", d.ID, late.Round(time.Microsecond))
	require.GreaterOrEqual(t, late, time.Duration(0), "task %d started before its run_after", d.ID)
	require.Less(t, late, lateStart, "task %d after its run_after, across a restart", d.ID)
}

// waitingTasks is how many tasks wait for their time in
// TestWaitingTasksCostNothing, spread over an hour from 10 minutes on.
const waitingTasks = 1000

// TestWaitingTasksCostNothing: a thousand tasks of one role waiting for
// their time start no process and hold no slot: once the submit's work is
// over, nothing of ours starts for longer than the launcher's nap, and
// another role's task starts at once.
func TestWaitingTasksCostNothing(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.DebugServerLog(t, su)
	waiter := testkit.NewTempRole(t, su, "delayed_many")
	wc := testkit.Connect(t, waiter)
	testkit.MustExec(t, wc, fmt.Sprintf(`SELECT count(lantern.async_task('SELECT 1',
		run_after => clock_timestamp() + interval '10 min' + i * interval '3 s')) FROM generate_series(1, %d) i`, waitingTasks))
	// The submit's commit may start a worker, which finds nothing due and
	// leaves; so may the workers of the tests before.
	testkit.RequireNoneStartWhileWaiting(t, "tasks for later")
	require.Equal(t, map[string]int{"pending": waitingTasks}, testkit.StatusCounts(t, su, waiter))

	carol := testkit.Connect(t, "carol")
	delay := testkit.SubmitTimed(t, carol, testkit.StartTable(t, su, "carol")).StartDelay(t, carol, testkit.WaitTimeout)
	t.Logf("another role's task started %v after its submit", delay.Round(time.Microsecond))
	require.Less(t, delay, lateStart, "another role's task beside %d waiting ones", waitingTasks)
}
