package cancel

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// lantern.cancel_all_async_tasks() for many tasks: every
// unfinished task of the caller (a superuser: of everybody) in one call,
// for any number of tasks, and nothing of another role for an ordinary
// caller. TestCancelAllAsyncTasks in cancel_test.go has the few-task
// cases (running tasks, finished rows).

// TestCancelAllManyPending submits n tasks and cancels them in the same
// transaction: they are pending (invisible to the workers) until the
// commit, so every one of them must be canceled by the call, quickly.
// Several sizes: a freed-memory bug once showed at some and not at
// others.
func TestCancelAllManyPending(t *testing.T) {
	for _, n := range []int{500, 2000, 10_000, 100_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			role := testkit.NewTempRole(t, su, "cancel_many")
			conn := testkit.Connect(t, role)
			// Statistics taken with no task pending, as autovacuum usually
			// finds a queue: the planner then expects one pending row, and a
			// plan that joins by nested loop takes hours for 100,000.
			testkit.MustExec(t, su, "ANALYZE lantern.tasks, lantern.task_owners")

			tx, err := conn.Begin(testkit.Ctx(t))
			require.NoError(t, err)
			start := time.Now()
			testkit.SubmitMany(t, tx, "SELECT 1", n)
			t.Logf("submitting %d tasks took %s", n, time.Since(start).Round(time.Millisecond))
			_, err = tx.Exec(testkit.Ctx(t), "SET LOCAL statement_timeout = '1min'")
			require.NoError(t, err)
			start = time.Now()
			_, err = tx.Exec(testkit.Ctx(t), "SELECT lantern.cancel_all_async_tasks()")
			took := time.Since(start)
			require.NoError(t, err, "cancel_all_async_tasks() over %d pending tasks of the caller", n)
			require.NoError(t, tx.Commit(testkit.Ctx(t)))
			t.Logf("cancel_all_async_tasks() over %d pending tasks took %s", n, took.Round(time.Millisecond))

			require.Equal(t, map[string]int{"canceled": n}, testkit.StatusCounts(t, su, role),
				"statuses of the %d tasks after cancel_all_async_tasks()", n)
			require.Equal(t, n, testkit.CanceledShape(t, su, role),
				"canceled tasks with error_message %q, a duration and sqlstate 57014", testkit.CanceledMessage)
			require.Less(t, took, time.Minute, "cancel_all_async_tasks() over %d pending tasks", n)

			// The role's next task runs normally.
			testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
		})
	}
}

// TestCancelAllBySuperuserAcrossRoles: with every worker slot taken by the
// superuser's blockers, three roles queue ~2000 tasks; one call of the
// superuser cancels all of them and the blockers.
func TestCancelAllBySuperuserAcrossRoles(t *testing.T) {
	testkit.Begin(t)
	const perRole = 700
	su := testkit.Connect(t, testkit.Superuser)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	var roles []string
	for range 3 {
		roles = append(roles, testkit.NewTempRole(t, su, "cancel_su_all"))
	}
	// The tasks wait on the lock too: one that starts while the call runs
	// stays running until its cancel arrives, so a race cannot let it succeed.
	for _, r := range roles {
		testkit.SubmitMany(t, testkit.Connect(t, r), lock.WaitSQL(), perRole)
		require.Equal(t, map[string]int{"pending": perRole}, testkit.StatusCounts(t, su, r), "every slot is busy: %s's tasks are pending", r)
	}

	testkit.MustExec(t, su, "SELECT lantern.cancel_all_async_tasks()")
	for _, r := range roles {
		require.Equal(t, map[string]int{"canceled": perRole}, testkit.StatusCounts(t, su, r),
			"statuses of %s's tasks after the superuser's cancel_all_async_tasks()", r)
		require.Equal(t, perRole, testkit.CanceledShape(t, su, r), "canceled tasks of %s recorded like cancel_task's", r)
	}
	for _, id := range blockers {
		testkit.RequireCanceled(t, su, id, "57014")
	}
	require.Equal(t, 0, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE status IN ('pending', 'running')"),
		"nothing unfinished after the superuser's cancel_all_async_tasks()")
}

// TestCancelAllLeavesOthers: an ordinary role's cancel_all_async_tasks()
// with many of another role's tasks pending (jobids interleaved with its
// own) cancels exactly its own, never errors because of the others' and
// leaves them untouched.
func TestCancelAllLeavesOthers(t *testing.T) {
	testkit.Begin(t)
	const rounds, batch = 10, 100
	su := testkit.Connect(t, testkit.Superuser)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	me, other := testkit.NewTempRole(t, su, "cancel_all_me"), testkit.NewTempRole(t, su, "cancel_all_other")
	meConn, otherConn := testkit.Connect(t, me), testkit.Connect(t, other)
	for range rounds {
		testkit.SubmitMany(t, meConn, lock.WaitSQL(), batch)
		testkit.SubmitMany(t, otherConn, lock.WaitSQL(), batch)
	}
	n := rounds * batch
	require.Equal(t, map[string]int{"pending": n}, testkit.StatusCounts(t, su, me))
	require.Equal(t, map[string]int{"pending": n}, testkit.StatusCounts(t, su, other))
	blockersBefore := map[int64]testkit.Task{}
	for _, id := range blockers {
		blockersBefore[id] = testkit.GetTask(t, su, id)
	}

	_, err := meConn.Exec(testkit.Ctx(t), "SELECT lantern.cancel_all_async_tasks()")
	require.NoError(t, err, "an ordinary role's cancel_all_async_tasks() with another role's tasks pending")
	require.Equal(t, map[string]int{"canceled": n}, testkit.StatusCounts(t, su, me), "the caller's tasks")
	require.Equal(t, n, testkit.CanceledShape(t, su, me), "the caller's canceled tasks recorded like cancel_task's")
	require.Equal(t, map[string]int{"pending": n}, testkit.StatusCounts(t, su, other), "the other role's tasks must be untouched")
	require.Equal(t, 0, testkit.QueryOne[int](t, su, `
		SELECT count(*)::int FROM lantern.task_errors e JOIN lantern.tasks t USING (jobid)
		WHERE t.username = $1`, other), "task_errors rows of the other role")
	for id, before := range blockersBefore {
		require.Equal(t, before, testkit.GetTask(t, su, id), fmt.Sprintf("the superuser's running task %d must be untouched", id))
	}

	// Drop the other role's queue before the slots free up, then let the
	// blockers finish.
	testkit.PurgeTasks(t, su, []string{other})
	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}
