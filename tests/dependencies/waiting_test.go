package dependencies

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// lateStart bounds how long after its submit another role's task starts:
// a worker is forked and logs in (tens of milliseconds; up to a second on
// a loaded machine). A claim that walked the waiting tasks, or a process
// held for them, would show in it.
const lateStart = 2 * time.Second

// waitingTasks is how many tasks wait for one dependency in
// TestWaitingTasksCostNothing.
const waitingTasks = 1000

// TestWaitingTasksCostNothing: a thousand tasks of one role waiting for a
// task due in an hour start no process and hold no slot once their first
// claims found them waiting, and another role's task starts at once; when
// the dependency is canceled, every one of them ends.
func TestWaitingTasksCostNothing(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.DebugServerLog(t, su)
	waiter := testkit.NewTempRole(t, su, "deps_many")
	wc := testkit.Connect(t, waiter)
	oid := testkit.QueryOne[uint32](t, su, "SELECT oid FROM pg_roles WHERE rolname = $1", waiter)
	logFrom := len(testkit.Cluster.Log())
	b := testkit.QueryOne[int64](t, wc, "SELECT lantern.async_task('SELECT 1', run_after => now() + interval '1 hour')")
	testkit.MustExec(t, wc, fmt.Sprintf(`SELECT count(lantern.async_task('SELECT 1', depends_on => ARRAY[%d]))
		FROM generate_series(1, %d)`, b, waitingTasks))
	require.Equal(t, waitingTasks, testkit.QueryOne[int](t, su, `
		SELECT count(*)::int FROM lantern.task_dependencies WHERE depends_on = $1`, b))
	testkit.RequirePoll(t, testkit.WaitTimeout, "every dependent found waiting", testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int64](su, `SELECT count(*) FROM lantern.task_dependencies d
			JOIN lantern.task_owners o USING (jobid) WHERE d.depends_on = $1 AND o.due IS NULL AND o.depends`, b)
		if err != nil {
			return false, err.Error()
		}
		return n[0] == waitingTasks, fmt.Sprintf("%d waiting", n[0])
	}))
	testkit.RequireNoneStartWhileWaiting(t, "waiting tasks")
	require.Equal(t, map[string]int{"pending": waitingTasks + 1}, testkit.StatusCounts(t, su, waiter))
	// The workers that only decided, gone by now, did their work: the launcher does not hold
	// the role back as if they had failed.
	require.NotContains(t, testkit.Cluster.Log()[logFrom:],
		fmt.Sprintf("a worker of role %d for database", oid), "the launcher's backoff of the waiting role")

	carol := testkit.Connect(t, "carol")
	delay := testkit.SubmitTimed(t, carol, testkit.StartTable(t, su, "carol")).StartDelay(t, carol, testkit.WaitTimeout)
	t.Logf("another role's task started %v after its submit", delay.Round(time.Microsecond))
	require.Less(t, delay, lateStart, "another role's task beside %d waiting ones", waitingTasks)

	testkit.RequireCancelTask(t, wc, b, true)
	testkit.RequirePoll(t, testkit.WaitTimeout, "every dependent failed", func() (bool, string) {
		counts := testkit.StatusCounts(t, su, waiter)
		return counts["failed"] == waitingTasks, fmt.Sprint(counts)
	})
}

// TestCancelWhileWaiting: a task waiting for its dependency is canceled at
// once, and its dependency's end never puts it back in the claims' queue.
func TestCancelWhileWaiting(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	lock := testkit.HoldAdvisoryLock(t)
	b := testkit.Submit(t, alice, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{b})
	a := submitAfter(t, alice, "SELECT 1", b)
	waitWaiting(t, su, a)
	testkit.RequireCancelTask(t, alice, a, true)
	testkit.RequireCanceled(t, alice, a, "57014")
	lock.Release(t)
	testkit.RequireSucceeded(t, alice, b)
	require.Equal(t, "canceled", testkit.Deref(testkit.GetTask(t, su, a).Status))
	require.True(t, testkit.QueryOne[bool](t, su,
		"SELECT due IS NULL FROM lantern.task_owners WHERE jobid = $1", a),
		"the canceled task's owner row: its dependency's end did not queue it again")
}

// TestWaitingSurvivesRestart: a task waiting for a dependency when the
// server restarts runs after that dependency succeeds.
func TestWaitingSurvivesRestart(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	bob := testkit.Connect(t, "bob")
	b := testkit.QueryOne[int64](t, bob, "SELECT lantern.async_task('SELECT 1', run_after => now() + interval '5 s')")
	tbl := startLog(t, su, "bob")
	a := submitAfter(t, bob, logStart(tbl), b)
	waitWaiting(t, su, a)
	testkit.RestartServer(t)
	bob = testkit.Connect(t, "bob")
	testkit.RequireSucceeded(t, bob, b, a)
	require.False(t, startedAt(t, bob, tbl).Before(endedAt(t, bob, b)), "task %d started before its dependency ended", a)
}
