package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lantern.cancel_all_async_tasks() for many tasks (issue 6, item 2): every
// unfinished task of the caller (a superuser: of everybody) in one call,
// for any number of tasks, and nothing of another role for an ordinary
// caller. TestCancelAllAsyncTasks in cancel_test.go has the few-task
// cases (running tasks, finished rows).

// TestCancelAllManyPending submits n tasks and cancels them in the same
// transaction: they are pending (invisible to the workers) until the
// commit, so every one of them must be canceled by the call, quickly.
// Several sizes: the freed-memory bug of issue 6 shows at some and not at
// others.
func TestCancelAllManyPending(t *testing.T) {
	for _, n := range []int{500, 2000, 10_000, 100_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			begin(t)
			su := connect(t, superuser)
			role := newTempRole(t, su, "cancel_many")
			conn := connect(t, role)

			tx, err := conn.Begin(ctx(t))
			require.NoError(t, err)
			start := time.Now()
			submitMany(t, tx, "SELECT 1", n)
			t.Logf("submitting %d tasks took %s", n, time.Since(start).Round(time.Millisecond))
			start = time.Now()
			_, err = tx.Exec(ctx(t), "SELECT lantern.cancel_all_async_tasks()")
			took := time.Since(start)
			require.NoError(t, err, "cancel_all_async_tasks() over %d pending tasks of the caller", n)
			require.NoError(t, tx.Commit(ctx(t)))
			t.Logf("cancel_all_async_tasks() over %d pending tasks took %s", n, took.Round(time.Millisecond))

			require.Equal(t, map[string]int{"canceled": n}, statusCounts(t, su, role),
				"statuses of the %d tasks after cancel_all_async_tasks()", n)
			require.Equal(t, n, canceledShape(t, su, role),
				"canceled tasks with error_message %q, a duration and sqlstate 57014", canceledMessage)
			require.Less(t, took, time.Minute, "cancel_all_async_tasks() over %d pending tasks", n)

			// The role's next task runs normally.
			requireSucceeded(t, conn, submit(t, conn, "SELECT 1"))
		})
	}
}

// TestCancelAllBySuperuserAcrossRoles: with every worker slot taken by the
// superuser's blockers, three roles queue ~2000 tasks; one call of the
// superuser cancels all of them and the blockers.
func TestCancelAllBySuperuserAcrossRoles(t *testing.T) {
	begin(t)
	const perRole = 700
	su := connect(t, superuser)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	var roles []string
	for range 3 {
		roles = append(roles, newTempRole(t, su, "cancel_su_all"))
	}
	// The tasks wait on the lock too: one that starts while the call runs
	// stays running until its cancel arrives, so a race cannot let it succeed.
	for _, r := range roles {
		submitMany(t, connect(t, r), lock.waitSQL(), perRole)
		require.Equal(t, map[string]int{"pending": perRole}, statusCounts(t, su, r), "every slot is busy: %s's tasks are pending", r)
	}

	mustExec(t, su, "SELECT lantern.cancel_all_async_tasks()")
	for _, r := range roles {
		require.Equal(t, map[string]int{"canceled": perRole}, statusCounts(t, su, r),
			"statuses of %s's tasks after the superuser's cancel_all_async_tasks()", r)
		require.Equal(t, perRole, canceledShape(t, su, r), "canceled tasks of %s recorded like cancel_task's", r)
	}
	for _, id := range blockers {
		requireCanceled(t, su, id, "57014")
	}
	require.Equal(t, 0, queryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE status IN ('pending', 'running')"),
		"nothing unfinished after the superuser's cancel_all_async_tasks()")
}

// TestCancelAllLeavesOthers: an ordinary role's cancel_all_async_tasks()
// with many of another role's tasks pending (jobids interleaved with its
// own) cancels exactly its own, never errors because of the others' and
// leaves them untouched.
func TestCancelAllLeavesOthers(t *testing.T) {
	begin(t)
	const rounds, batch = 10, 100
	su := connect(t, superuser)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	me, other := newTempRole(t, su, "cancel_all_me"), newTempRole(t, su, "cancel_all_other")
	meConn, otherConn := connect(t, me), connect(t, other)
	for range rounds {
		submitMany(t, meConn, lock.waitSQL(), batch)
		submitMany(t, otherConn, lock.waitSQL(), batch)
	}
	n := rounds * batch
	require.Equal(t, map[string]int{"pending": n}, statusCounts(t, su, me))
	require.Equal(t, map[string]int{"pending": n}, statusCounts(t, su, other))
	blockersBefore := map[int64]task{}
	for _, id := range blockers {
		blockersBefore[id] = getTask(t, su, id)
	}

	_, err := meConn.Exec(ctx(t), "SELECT lantern.cancel_all_async_tasks()")
	require.NoError(t, err, "an ordinary role's cancel_all_async_tasks() with another role's tasks pending")
	require.Equal(t, map[string]int{"canceled": n}, statusCounts(t, su, me), "the caller's tasks")
	require.Equal(t, n, canceledShape(t, su, me), "the caller's canceled tasks recorded like cancel_task's")
	require.Equal(t, map[string]int{"pending": n}, statusCounts(t, su, other), "the other role's tasks must be untouched")
	require.Equal(t, 0, queryOne[int](t, su, `
		SELECT count(*)::int FROM lantern.task_errors e JOIN lantern.tasks t USING (jobid)
		WHERE t.username = $1`, other), "task_errors rows of the other role")
	for id, before := range blockersBefore {
		require.Equal(t, before, getTask(t, su, id), fmt.Sprintf("the superuser's running task %d must be untouched", id))
	}

	// Drop the other role's queue before the slots free up, then let the
	// blockers finish.
	purgeTasks(t, su, []string{other})
	lock.release(t)
	requireSucceeded(t, su, blockers...)
}
