package delayed

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// lateStart bounds how long after its run_after a task starts when no
// worker of its role is waiting: the launcher's nap ends at the due time
// (to the millisecond), then a worker is forked and logs in (tens of
// milliseconds; up to a second on a loaded machine). A polling tick would
// be the launcher's 10 s nap.
const lateStart = 2 * time.Second

// lateWake bounds it when an idle worker of the role is waiting: the
// launcher's nap ends at the due time and it sets that worker's latch.
const lateWake = time.Second

// TestRunAfterStartsAtItsTime: three tasks, submitted latest first, each
// start at their own time: never before it, and well within the
// launcher's nap after it; so in time order, not in jobid order.
func TestRunAfterStartsAtItsTime(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	var tasks []testkit.TimedTask
	for _, in := range []time.Duration{3 * time.Second, 2 * time.Second, 1500 * time.Millisecond} {
		tasks = append(tasks, testkit.SubmitTimedAfter(t, alice, testkit.StartTable(t, su, "alice"), in))
	}
	for _, d := range tasks {
		require.Equal(t, "pending", status(t, alice, d), "task %d before its time", d.ID)
	}
	var starts []time.Time
	for i := len(tasks) - 1; i >= 0; i-- {
		d := tasks[i]
		started := d.StartedAt(t, alice, testkit.WaitTimeout)
		late := started.Sub(d.RunAfter)
		t.Logf("task %d started %v after its run_after", d.ID, late.Round(time.Microsecond))
		require.GreaterOrEqual(t, late, time.Duration(0), "task %d started before its run_after", d.ID)
		require.Less(t, late, lateStart, "task %d after its run_after", d.ID)
		starts = append(starts, started)
	}
	require.IsIncreasing(t, []int64{starts[0].UnixNano(), starts[1].UnixNano(), starts[2].UnixNano()},
		"the tasks start in the order of their times")
}

// TestRunAfterWakesAnIdleWorker: a worker of the role waits idle (a long
// worker_idle_timeout); a task for later does not wake it at the submit,
// and the launcher wakes it at the task's time.
func TestRunAfterWakesAnIdleWorker(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, testkit.SlowIdleTimeout)
	bob := testkit.Connect(t, "bob")
	testkit.RequireSucceeded(t, bob, testkit.Submit(t, bob, "SELECT 1"))
	for range 3 {
		d := testkit.SubmitTimedAfter(t, bob, testkit.StartTable(t, su, "bob"), time.Second)
		late := d.StartedAt(t, bob, testkit.WaitTimeout).Sub(d.RunAfter)
		t.Logf("task %d started %v after its run_after", d.ID, late.Round(time.Microsecond))
		require.GreaterOrEqual(t, late, time.Duration(0), "task %d started before its run_after", d.ID)
		require.Less(t, late, lateWake, "task %d after its run_after, its role's worker idle", d.ID)
	}
}

// TestRunAfterInThePastStartsAtOnce: a time already past means now.
func TestRunAfterInThePastStartsAtOnce(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	carol := testkit.Connect(t, "carol")
	d := testkit.SubmitTimedAfter(t, carol, testkit.StartTable(t, su, "carol"), -time.Hour)
	delay := d.StartDelay(t, carol, testkit.WaitTimeout)
	t.Logf("task %d, an hour late already, started %v after its submit", d.ID, delay.Round(time.Microsecond))
	require.Less(t, delay, lateStart, "a task whose run_after has passed")
}

// TestRunAfterInfinityRefused: a task that could never start is refused,
// and nothing is queued.
func TestRunAfterInfinityRefused(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	before := testkit.CountTasks(t, su)
	_, err := alice.Exec(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1', run_after => 'infinity')")
	e := testkit.RequirePgError(t, err, "22023", "run_after => 'infinity'")
	require.Equal(t, "run_after must not be infinity", e.Message)
	require.Equal(t, before, testkit.CountTasks(t, su), "tasks after the refused submit")
}

// status reads task d's status through conn.
func status(t *testing.T, conn *pgx.Conn, d testkit.TimedTask) string {
	t.Helper()
	return testkit.Deref(testkit.GetTask(t, conn, d.ID).Status)
}
