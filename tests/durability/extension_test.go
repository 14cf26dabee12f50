package durability

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Tests of DROP EXTENSION / CREATE EXTENSION while the background workers
// are busy. They re-create the extension, which empties lantern.tasks and
// restarts the jobids for every later test; they leave the grants as
// testkit.Run made them.

// restoreExtensionAtEnd registers a cleanup that re-creates the extension
// (with the grants) if the test left it dropped, so that later tests still
// work.
func restoreExtensionAtEnd(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := testkit.Cluster.Connect(c, testkit.DBName, testkit.Superuser)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close(context.Background())
		var installed bool
		if err := conn.QueryRow(c,
			"SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'lantern_async')").Scan(&installed); err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		if installed {
			return
		}
		t.Logf("cleanup: re-creating the extension the test left dropped")
		if _, err := conn.Exec(c, "CREATE EXTENSION lantern_async"); err != nil {
			t.Errorf("cleanup: CREATE EXTENSION lantern_async: %v", err)
			return
		}
		if err := testkit.GrantExtensionAccess(c, conn); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// recreateExtension drops and creates the extension: a new, empty
// lantern.tasks whose jobids start again at 1.
func recreateExtension(t *testing.T, su *pgx.Conn) {
	t.Helper()
	testkit.DropExtension(t, su)
	testkit.CreateExtension(t, su)
}

// nextJobID is the jobid the next async_task will get.
func nextJobID(t *testing.T, su *pgx.Conn) int64 {
	t.Helper()
	return testkit.QueryOne[int64](t, su,
		"SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM lantern.tasks_jobid_seq")
}

// waitProcessGone waits until no server process has pid any more.
func waitProcessGone(t *testing.T, su *pgx.Conn, pid int) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("process %d to exit", pid), testkit.WhileConnected(su, func() (bool, string) {
		qs, err := testkit.QueryRows[string](su, "SELECT coalesce(query, '') FROM pg_stat_activity WHERE pid = $1", pid)
		if err != nil {
			return false, err.Error()
		}
		if len(qs) == 0 {
			return true, ""
		}
		return false, fmt.Sprintf("still there, query %q", qs[0])
	}))
}

var errorLineRe = regexp.MustCompile(`(?m)^.*\b(ERROR|FATAL|PANIC):.*$`)

// logPrefixRe matches the default log_line_prefix '%m [%p] '.
var logPrefixRe = regexp.MustCompile(`^\S+ \S+ \S+ \[\d+\] `)

func errorLines(log string) []string {
	return errorLineRe.FindAllString(log, -1)
}

func TestDropExtensionWhileBusy(t *testing.T) {
	testkit.Begin(t)
	restoreExtensionAtEnd(t)
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "drop_marker", "alice")
	require.Equal(t, 4, testkit.Cluster.MaxWorkers(), "the test fills exactly 4 worker slots")
	alice := fillSlotsAndQueue(t, su, marker)

	logBefore := len(testkit.Cluster.Log())
	testkit.DropExtension(t, su)
	n, err := testkit.CountBackends(su, testkit.BackendLauncher)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the launcher right after DROP EXTENSION")

	// The running workers finish their pg_sleep(5) with nowhere to record
	// the outcome, and must exit.
	testkit.WaitWorkerCount(t, su, 0, "every "+testkit.BackendWorker+" to exit after the drop")
	requireLogQuietWhileDropped(t, logBefore)
	n, err = testkit.CountBackends(su, testkit.BackendLauncher)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the launcher is still alive while the extension is dropped")

	testkit.CreateExtension(t, su)
	requireFreshQueueWorks(t, su, alice, marker)
}

// fillSlotsAndQueue starts four tasks (one per role fills every slot), waits
// until they run, then queues two pending tasks of alice that insert 1 and
// 2 into marker. It returns alice's connection.
func fillSlotsAndQueue(t *testing.T, su *pgx.Conn, marker string) *pgx.Conn {
	t.Helper()
	var running []int64
	for _, role := range []string{"alice", "bob", "carol", testkit.Superuser} {
		running = append(running, testkit.Submit(t, testkit.Connect(t, role), "SELECT pg_sleep(5)"))
	}
	testkit.RequirePoll(t, testkit.WaitTimeout, "4 tasks running", testkit.WhileConnected(su, func() (bool, string) {
		st, err := testkit.StatusesOf(su, running)
		if err != nil {
			return false, err.Error()
		}
		return testkit.CountStatus(st, "running") == 4, fmt.Sprintf("statuses %v", st)
	}))
	alice := testkit.Connect(t, "alice")
	pending := []int64{testkit.Submit(t, alice, testkit.MarkerInsert(marker, 1)), testkit.Submit(t, alice, testkit.MarkerInsert(marker, 2))}
	st, err := testkit.StatusesOf(su, pending)
	require.NoError(t, err)
	require.Equal(t, []string{"pending", "pending"}, st)
	return alice
}

// requireLogQuietWhileDropped checks the server log since the drop (from
// offset logBefore), once the workers exited: no new ERROR/FATAL lines for
// a while, and none that repeats.
func requireLogQuietWhileDropped(t *testing.T, logBefore int) {
	t.Helper()
	atExit := errorLines(testkit.Cluster.Log()[logBefore:])
	// Then ~3 s (three launcher rounds) more with no table: nothing
	// may start repeating in the log.
	testkit.Never(t, 3*time.Second, func() (bool, string) {
		lines := errorLines(testkit.Cluster.Log()[logBefore:])
		return len(lines) > len(atExit), strings.Join(lines[len(atExit):], "\n")
	}, "new ERROR/FATAL lines in the server log while the extension is dropped")
	// No message may repeat: the same ERROR twice means a loop keeps
	// failing on the missing table.
	after := errorLines(testkit.Cluster.Log()[logBefore:])
	seen := map[string]int{}
	for _, l := range after {
		seen[logPrefixRe.ReplaceAllString(l, "")]++
	}
	for msg, n := range seen {
		require.Equal(t, 1, n, "server log line repeated %d times since DROP EXTENSION: %s", n, msg)
	}
	if len(after) > 0 {
		t.Logf("observation: ERROR/FATAL lines in the server log since DROP EXTENSION (none repeats):\n%s",
			strings.Join(after, "\n"))
	}
}

// requireFreshQueueWorks: after CREATE EXTENSION the queue is empty, the
// tasks pending at the drop never run, and every test role may submit.
func requireFreshQueueWorks(t *testing.T, su, alice *pgx.Conn, marker string) {
	t.Helper()
	require.Equal(t, 0, testkit.CountTasks(t, su), "the new queue is empty")
	id := testkit.Submit(t, alice, testkit.MarkerInsert(marker, 3))
	testkit.RequireSucceeded(t, alice, id)
	require.Equal(t, []int{3}, testkit.MarkerValues(t, marker), "tasks pending at the drop must never run")
	require.Equal(t, "alice", testkit.GetTask(t, su, id).Username)

	// The roles' access is as testkit.Run left it.
	for _, role := range testkit.TestRoles {
		conn := testkit.Connect(t, role)
		testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
	}
	require.Equal(t, 0, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE status IN ('pending', 'running')"))
}

// TestStaleOutcomeAfterRecreate: a task of the dropped table that is still
// running when the extension is re-created must not write its outcome into
// the new table's row with the same jobid.
func TestStaleOutcomeAfterRecreate(t *testing.T) {
	for _, c := range []struct{ name, oldQuery string }{
		{"succeeding old task", "SELECT pg_sleep(4) /* %s */"},
		{"failing old task", "SELECT pg_sleep(4) /* %s */; SELECT 1/0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			testkit.Begin(t)
			restoreExtensionAtEnd(t)
			su := testkit.Connect(t, testkit.Superuser)
			alice := testkit.Connect(t, "alice")
			// Start from a fresh table, so that the colliding jobid is small.
			recreateExtension(t, su)

			old := testkit.StartTask(t, su, alice, fmt.Sprintf(c.oldQuery, testkit.Uniq("stale_old")))

			recreateExtension(t, su)
			for {
				next := nextJobID(t, su)
				require.LessOrEqual(t, next, old.ID, "the new table's jobids went past the old task's %d", old.ID)
				if next == old.ID {
					break
				}
				testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))
			}
			newTask := testkit.StartTask(t, su, alice, testkit.SleepQuery(8, "stale_new"))
			id := newTask.ID
			require.Equal(t, old.ID, id, "the new task has the old task's jobid")
			require.NotEqual(t, old.Pid, newTask.Pid)

			// The old task finishes (after 4 s) and its worker goes away.
			waitProcessGone(t, su, old.Pid)
			r := testkit.GetTask(t, su, id)
			require.Equal(t, "running", testkit.Deref(r.Status),
				"the new task %d is still sleeping: the old task's outcome must not land on it (error_message %q)",
				id, testkit.Deref(r.ErrorMessage))
			require.Nil(t, r.Duration)
			require.Nil(t, r.ErrorMessage)
			require.Empty(t, testkit.TaskSQLState(t, id))

			testkit.RequireSucceeded(t, alice, id)
			r = testkit.GetTask(t, su, id)
			require.GreaterOrEqual(t, testkit.Deref(r.Duration), 7.9, "duration of the new pg_sleep(8) task")
			require.Empty(t, testkit.TaskSQLState(t, id))
		})
	}
}

// TestCancelAfterRecreateTargetsNewTask: after DROP/CREATE EXTENSION, a
// worker of the old table may still run a task whose jobid the new table
// gives to another task. cancel_task(jobid) on the new table must stop the
// new task, not the old one.
func TestCancelAfterRecreateTargetsNewTask(t *testing.T) {
	testkit.Begin(t)
	restoreExtensionAtEnd(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	recreateExtension(t, su)

	// Long enough to outlast the cancel's wait for the new task (testkit.CancelBound).
	old := testkit.StartTask(t, su, alice, testkit.SleepQuery(12, "recreate_cancel_old"))

	recreateExtension(t, su)
	require.Equal(t, old.ID, nextJobID(t, su), "the new table's first jobid")
	newTask := testkit.StartTask(t, su, alice, testkit.SleepQuery(60, "recreate_cancel_new"))
	require.Equal(t, old.ID, newTask.ID)

	testkit.RequireCancelTask(t, alice, newTask.ID, true)
	newStopped, _ := testkit.Poll(t, testkit.CancelBound, testkit.StoppedRunning(su, newTask), "the new task's worker to stop at cancel_task")
	oldActive, err := testkit.StillRunning(su, old)
	require.NoError(t, err)
	require.True(t, newStopped && oldActive,
		"cancel_task(%d) after re-creating the extension: new task (worker %d) stopped=%v, old table's task with the same jobid (worker %d) still running=%v",
		newTask.ID, newTask.Pid, newStopped, old.Pid, oldActive)
	testkit.RequireCanceled(t, alice, newTask.ID, "57014")
	// The old task was not the target: it runs to its end.
	waitProcessGone(t, su, old.Pid)
}
