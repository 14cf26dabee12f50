package cancel

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Tests of lantern.cancel_task(jobid) and lantern.cancel_all_async_tasks().

func TestCancelPendingTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	marker := testkit.MarkerTable(t, su, "cancel_pending", "alice")

	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	id := testkit.Submit(t, alice, testkit.MarkerInsert(marker, 1))
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, id).Status), "every worker is busy: the task must be pending")

	testkit.RequireCancelTask(t, alice, id, true)
	// A pending task is canceled at once, and recorded like a canceled
	// running one (SQLSTATE 57014).
	r := testkit.GetTask(t, alice, id)
	testkit.RequireCanceledRow(t, r, "57014")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	// A later task of the same role finished: the launcher and a worker of
	// alice have been through the queue since.
	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, testkit.MarkerInsert(marker, 2)))
	require.Equal(t, []int{2}, testkit.MarkerValues(t, marker), "the canceled task must never run")
	require.Equal(t, r, testkit.GetTask(t, alice, id), "the canceled row must stay as it was")
}

func TestCancelRunningTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	marker := testkit.MarkerTable(t, su, "cancel_running", "alice")

	submitted := time.Now()
	rt := testkit.StartTask(t, su, alice, testkit.SleepQuery(60, "cancel_running"))

	testkit.RequireCancelTask(t, alice, rt.ID, true)
	testkit.RequireStopsRunning(t, su, rt)

	r := testkit.RequireCanceled(t, alice, rt.ID, "57014")
	require.Less(t, *r.Duration, time.Since(submitted).Seconds()+1, "duration of the canceled task")
	require.Less(t, *r.Duration, 60.0, "the task must not have slept its 60 s")

	// The worker (and the role's next task) keeps working.
	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, testkit.MarkerInsert(marker, 1)))
	require.Equal(t, []int{1}, testkit.MarkerValues(t, marker))
}

func TestCancelMultiStatementRollsBack(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	tbl := testkit.Ident(t, testkit.Uniq("c1"))

	rt := testkit.StartTask(t, su, alice, fmt.Sprintf("CREATE TABLE %s(a int); SELECT pg_sleep(60)", tbl))
	// The first statement has run (uncommitted) by the time the sleep is
	// reached; wait for the sleep itself.
	testkit.RequirePoll(t, testkit.WaitTimeout, "the task to be sleeping", testkit.WhileConnected(su, func() (bool, string) {
		var ev *string
		if err := su.QueryRow(context.Background(),
			"SELECT wait_event FROM pg_stat_activity WHERE pid = $1", rt.Pid).Scan(&ev); err != nil {
			return false, err.Error()
		}
		return testkit.Deref(ev) == "PgSleep", fmt.Sprintf("wait_event=%q", testkit.Deref(ev))
	}))

	testkit.RequireCancelTask(t, alice, rt.ID, true)
	testkit.RequireCanceled(t, alice, rt.ID, "57014")
	require.False(t, testkit.TableExists(t, tbl), "the canceled string must leave no table %s", tbl)
}

func TestCancelFinishedTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")

	succeeded := testkit.Submit(t, alice, "SELECT 1")
	testkit.RequireSucceeded(t, alice, succeeded)
	failed := testkit.Submit(t, alice, "SELECT 1/0")
	testkit.RequireFailed(t, alice, failed)
	canceled := testkit.StartTask(t, su, alice, testkit.SleepQuery(60, "cancel_finished")).ID
	testkit.RequireCancelTask(t, alice, canceled, true)
	testkit.RequireCanceled(t, alice, canceled, "57014")

	for _, c := range []struct {
		name string
		id   int64
	}{{"succeeded", succeeded}, {"failed", failed}, {"canceled", canceled}} {
		before := testkit.GetTask(t, su, c.id)
		beforeState := testkit.TaskSQLState(t, c.id)
		testkit.RequireCancelTask(t, alice, c.id, false)
		testkit.RequireCancelTask(t, su, c.id, false)
		require.Equal(t, before, testkit.GetTask(t, su, c.id), "%s row must be unchanged by cancel_task", c.name)
		require.Equal(t, beforeState, testkit.TaskSQLState(t, c.id), "%s task_errors row must be unchanged", c.name)
	}

	// A jobid that does not exist.
	missing := testkit.QueryOne[int64](t, su, "SELECT coalesce(max(jobid), 0) + 1000000 FROM lantern.tasks")
	testkit.RequireCancelTask(t, alice, missing, false)
	testkit.RequireCancelTask(t, su, missing, false)
	require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", missing))

	// STRICT: NULL in, NULL out.
	var res *bool
	require.NoError(t, alice.QueryRow(testkit.Ctx(t), "SELECT lantern.cancel_task(NULL)").Scan(&res))
	require.Nil(t, res, "lantern.cancel_task(NULL)")
}

func TestCancelForeignTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	bob := testkit.Connect(t, "bob")
	marker := testkit.MarkerTable(t, su, "cancel_foreign", "alice")

	t.Run("another role is refused", func(t *testing.T) {
		rt := testkit.StartTask(t, su, alice, fmt.Sprintf("SELECT pg_sleep(3); INSERT INTO %s VALUES (1) /* %s */", marker, testkit.Uniq("foreign")))
		before := testkit.GetTask(t, su, rt.ID)

		_, err := testkit.CancelTask(bob, rt.ID)
		pgErr := testkit.RequirePgError(t, err, "42501", "bob cancels alice's task %d", rt.ID)
		require.Equal(t, fmt.Sprintf("permission denied to cancel task %d", rt.ID), pgErr.Message)
		t.Logf("refusal as psql shows it:\n%s", testkit.ErrorText(err))
		require.Equal(t, before, testkit.GetTask(t, su, rt.ID), "a refused cancel must leave the row unchanged")

		testkit.RequireSucceeded(t, alice, rt.ID)
		require.Equal(t, []int{1}, testkit.MarkerValues(t, marker), "alice's task ran to its end")
	})

	t.Run("a member of the role may cancel", func(t *testing.T) {
		dave := testkit.NewLoginRole(t, su, "dave")
		t.Cleanup(func() {
			c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = testkit.Cluster.Exec(c, testkit.DBName, fmt.Sprintf("DROP ROLE IF EXISTS %s", dave))
		})
		testkit.MustExec(t, su, fmt.Sprintf("GRANT alice TO %s", dave))
		daveConn := testkit.Connect(t, dave)

		rt := testkit.StartTask(t, su, alice, testkit.SleepQuery(60, "cancel_by_member"))
		testkit.RequireCancelTask(t, daveConn, rt.ID, true)
		testkit.RequireStopsRunning(t, su, rt)
		testkit.RequireCanceled(t, alice, rt.ID, "57014")
	})

	t.Run("the superuser may cancel", func(t *testing.T) {
		rt := testkit.StartTask(t, su, alice, testkit.SleepQuery(60, "cancel_by_superuser"))
		testkit.RequireCancelTask(t, su, rt.ID, true)
		testkit.RequireStopsRunning(t, su, rt)
		testkit.RequireCanceled(t, alice, rt.ID, "57014")
	})
}

// cancelAllScene is the queue TestCancelAllAsyncTasks cancels: finished
// rows of alice and bob, two running tasks of each (waiting on lock, they
// fill every worker slot) and one pending task of each. Every task inserts
// into marker once it gets past the lock.
type cancelAllScene struct {
	su, alice, bob, carol *pgx.Conn
	marker                string
	lock                  *testkit.AdvisoryLock
	finished              map[int64]testkit.Task
	runA, runB            []int64
	pendA, pendB          int64
}

func newCancelAllScene(t *testing.T) *cancelAllScene {
	t.Helper()
	s := &cancelAllScene{su: testkit.Connect(t, testkit.Superuser), alice: testkit.Connect(t, "alice"), bob: testkit.Connect(t, "bob"), carol: testkit.Connect(t, "carol")}
	su, alice, bob := s.su, s.alice, s.bob
	s.marker = testkit.MarkerTable(t, su, "cancel_all", "alice", "bob", "carol")
	require.Equal(t, 4, testkit.Cluster.MaxWorkers(), "the test fills exactly 4 worker slots")

	// Finished rows of two roles.
	doneA := testkit.Submit(t, alice, "SELECT 1")
	testkit.RequireSucceeded(t, alice, doneA)
	doneB := testkit.Submit(t, bob, "SELECT 1/0")
	testkit.RequireFailed(t, bob, doneB)
	s.finished = map[int64]testkit.Task{doneA: testkit.GetTask(t, su, doneA), doneB: testkit.GetTask(t, su, doneB)}

	// Running: two tasks each of alice and bob wait on an advisory lock and
	// fill every slot. Pending: one more of each.
	s.lock = testkit.HoldAdvisoryLock(t)
	s.runA = []int64{testkit.Submit(t, alice, s.blocked(1)), testkit.Submit(t, alice, s.blocked(2))}
	s.runB = []int64{testkit.Submit(t, bob, s.blocked(3)), testkit.Submit(t, bob, s.blocked(4))}
	s.lock.WaitBlocked(t, su, append(append([]int64{}, s.runA...), s.runB...))
	s.pendA = testkit.Submit(t, alice, s.blocked(5))
	s.pendB = testkit.Submit(t, bob, s.blocked(6))
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, s.pendA).Status))
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, s.pendB).Status))
	return s
}

// blocked is a task query that waits on the lock, then inserts n into the
// marker table.
func (s *cancelAllScene) blocked(n int) string {
	return s.lock.WaitSQL() + "; " + testkit.MarkerInsert(s.marker, n)
}

func (s *cancelAllScene) requireFinishedUnchanged(t *testing.T) {
	t.Helper()
	for id, before := range s.finished {
		require.Equal(t, before, testkit.GetTask(t, s.su, id), "finished task %d must be unchanged", id)
	}
}

// cancelAllAsAlice: cancel_all_async_tasks() as alice cancels only her own
// unfinished tasks; the pending one is canceled at once.
func (s *cancelAllScene) cancelAllAsAlice(t *testing.T) {
	t.Helper()
	su := s.su
	bobBefore := map[int64]testkit.Task{}
	for _, id := range s.runB {
		bobBefore[id] = testkit.GetTask(t, su, id)
	}

	testkit.MustExec(t, s.alice, "SELECT lantern.cancel_all_async_tasks()")
	testkit.RequireCanceledRow(t, testkit.GetTask(t, su, s.pendA), "")
	for _, id := range s.runA {
		testkit.RequireCanceled(t, s.alice, id, "57014")
	}
	for id, before := range bobBefore {
		require.Equal(t, before, testkit.GetTask(t, su, id), "bob's running task %d must be untouched by alice's cancel_all", id)
	}
	// bob's pending task is not canceled: it stays pending or gets one of
	// the slots alice's tasks left (and then waits on the lock).
	require.Contains(t, []string{"pending", "running"}, testkit.Deref(testkit.GetTask(t, su, s.pendB).Status),
		"bob's pending task must be untouched by alice's cancel_all")
	s.requireFinishedUnchanged(t)
}

// cancelAllAsSuperuser adds carol's tasks (one that will be running, one
// pending behind the others); cancel_all_async_tasks() as the superuser
// then cancels everybody's unfinished tasks.
func (s *cancelAllScene) cancelAllAsSuperuser(t *testing.T) {
	t.Helper()
	su, carol := s.su, s.carol
	runC := testkit.Submit(t, carol, s.blocked(7))
	s.lock.WaitBlocked(t, su, []int64{s.runB[0], s.runB[1], s.pendB, runC})
	pendC := testkit.Submit(t, carol, s.blocked(8))
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, pendC).Status))

	testkit.MustExec(t, su, "SELECT lantern.cancel_all_async_tasks()")
	for _, id := range []int64{s.runB[0], s.runB[1], s.pendB, runC} {
		testkit.RequireCanceled(t, su, id, "57014")
	}
	testkit.RequireCanceled(t, su, pendC, "")
	s.requireFinishedUnchanged(t)
	require.Equal(t, 0, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE status IN ('pending', 'running')"),
		"nothing unfinished after the superuser's cancel_all")
}

func TestCancelAllAsyncTasks(t *testing.T) {
	testkit.Begin(t)
	s := newCancelAllScene(t)
	s.cancelAllAsAlice(t)
	s.cancelAllAsSuperuser(t)

	s.lock.Release(t)
	testkit.RequireSucceeded(t, s.carol, testkit.Submit(t, s.carol, testkit.MarkerInsert(s.marker, 100)))
	require.Equal(t, []int{100}, testkit.MarkerValues(t, s.marker), "no canceled task may have run")
}

func TestAdminPgCancelBackend(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	marker := testkit.MarkerTable(t, su, "admin_cancel", "alice")

	rt := testkit.StartTask(t, su, alice, testkit.SleepQuery(60, "admin_cancel"))
	require.True(t, testkit.QueryOne[bool](t, su, "SELECT pg_cancel_backend($1)", rt.Pid))

	status, msg := testkit.WaitTask(t, alice, rt.ID)
	require.Equal(t, "failed", status, "a pg_cancel_backend() is not a cancel_task(): error_message %q", msg)
	require.Equal(t, "ERROR:  canceling statement due to user request", msg)
	require.Equal(t, "57014", testkit.TaskSQLState(t, rt.ID))

	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, testkit.MarkerInsert(marker, 1)))
	require.Equal(t, []int{1}, testkit.MarkerValues(t, marker))
}
