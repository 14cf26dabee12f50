package dependencies

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestStartsAfterItsDependency: a task waits, pending, while the task it
// depends on runs, and starts only after that one ended (both on the
// server's clock).
func TestStartsAfterItsDependency(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	lock := testkit.HoldAdvisoryLock(t)
	b := testkit.Submit(t, alice, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{b})
	tbl := startLog(t, su, "alice")
	a := submitAfter(t, alice, logStart(tbl), b)
	waitWaiting(t, su, a)
	require.Equal(t, "running", testkit.Deref(testkit.GetTask(t, alice, b).Status))
	lock.Release(t)
	testkit.RequireSucceeded(t, alice, b, a)
	start, end := startedAt(t, alice, tbl), endedAt(t, alice, b)
	t.Logf("task %d started %v after its dependency %d ended", a, start.Sub(end), b)
	require.False(t, start.Before(end), "task %d started at %v, before its dependency ended at %v", a, start, end)
	require.False(t, testkit.QueryOne[bool](t, su, "SELECT depends FROM lantern.task_owners WHERE jobid = $1", a),
		"task_owners.depends of a task whose dependencies all succeeded")
}

// TestDependsOnSeveral: a task waits for the last of several; one that
// succeeded long before counts.
func TestDependsOnSeveral(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	bob := testkit.Connect(t, "bob")
	done := testkit.Submit(t, bob, "SELECT 1")
	testkit.RequireSucceeded(t, bob, done)
	first, second := testkit.HoldAdvisoryLock(t), testkit.HoldAdvisoryLock(t)
	b1, b2 := testkit.Submit(t, bob, first.WaitSQL()), testkit.Submit(t, bob, second.WaitSQL())
	tbl := startLog(t, su, "bob")
	a := submitAfter(t, bob, logStart(tbl), done, b1, b2)
	waitWaiting(t, su, a)
	first.Release(t)
	testkit.RequireSucceeded(t, bob, b1)
	waitWaiting(t, su, a)
	second.Release(t)
	testkit.RequireSucceeded(t, bob, b2, a)
	require.False(t, startedAt(t, bob, tbl).Before(endedAt(t, bob, b2)), "task %d started before its last dependency ended", a)
}

// TestFailedDependency: a dependency that fails, whether before the
// dependent's submit or while it waits, fails the dependent, which never
// runs, with 55000 and an error naming it.
func TestFailedDependency(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	tbl := startLog(t, su, "alice")

	early := testkit.Submit(t, alice, "SELECT 1/0")
	testkit.RequireFailed(t, alice, early)
	a1 := submitAfter(t, alice, logStart(tbl), early)

	lock := testkit.HoldAdvisoryLock(t)
	late := testkit.Submit(t, alice, lock.WaitSQL()+"; SELECT 1/0")
	lock.WaitBlocked(t, su, []int64{late})
	a2 := submitAfter(t, alice, logStart(tbl), late)
	waitWaiting(t, su, a2)
	lock.Release(t)

	for dep, a := range map[int64]int64{early: a1, late: a2} {
		msg := testkit.RequireFailedWithSQLState(t, alice, a, "55000")
		require.Equal(t, dependsOnMessage(dep, "failed")+
			"DETAIL:  A task runs only after every task in its depends_on has succeeded.", msg)
	}
	require.Zero(t, testkit.QueryOne[int](t, alice, fmt.Sprintf("SELECT count(*)::int FROM %s", tbl)),
		"starts of tasks whose dependency failed")
}

// TestCanceledDependency: canceling a task does not cancel its
// dependents: they fail, naming it, whether it was running or pending.
func TestCanceledDependency(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	bob := testkit.Connect(t, "bob")
	lock := testkit.HoldAdvisoryLock(t)
	running := testkit.Submit(t, bob, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{running})
	var pending int64
	require.NoError(t, bob.QueryRow(testkit.Ctx(t),
		"SELECT lantern.async_task('SELECT 1', run_after => now() + interval '1 hour')").Scan(&pending))
	a1 := submitAfter(t, bob, "SELECT 1", running)
	a2 := submitAfter(t, bob, "SELECT 1", pending)
	waitWaiting(t, su, a1, a2)
	testkit.RequireCancelTask(t, bob, running, true)
	testkit.RequireCancelTask(t, bob, pending, true)
	for dep, a := range map[int64]int64{running: a1, pending: a2} {
		msg := testkit.RequireFailedWithSQLState(t, bob, a, "55000")
		require.Contains(t, msg, dependsOnMessage(dep, "was canceled"), "task %d (status failed, not canceled)", a)
	}
}

// TestCascade: A ← B ← C: A fails, so B fails naming A, and C fails
// naming B.
func TestCascade(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	carol := testkit.Connect(t, "carol")
	lock := testkit.HoldAdvisoryLock(t)
	a := testkit.Submit(t, carol, lock.WaitSQL()+"; SELECT 1/0")
	lock.WaitBlocked(t, su, []int64{a})
	b := submitAfter(t, carol, "SELECT 1", a)
	c := submitAfter(t, carol, "SELECT 1", b)
	waitWaiting(t, su, b, c)
	lock.Release(t)
	require.Contains(t, testkit.RequireFailedWithSQLState(t, carol, b, "55000"), dependsOnMessage(a, "failed"))
	require.Contains(t, testkit.RequireFailedWithSQLState(t, carol, c, "55000"), dependsOnMessage(b, "failed"))
}

// TestDependencyGone: a dependency deleted while its dependent waits
// (lantern_async.history_retention, or by hand) fails the dependent when
// its other dependency ends.
func TestDependencyGone(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	gone := testkit.Submit(t, alice, "SELECT 1")
	testkit.RequireSucceeded(t, alice, gone)
	lock := testkit.HoldAdvisoryLock(t)
	other := testkit.Submit(t, alice, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{other})
	a := submitAfter(t, alice, "SELECT 1", gone, other)
	waitWaiting(t, su, a)
	testkit.MustExec(t, su, "DELETE FROM lantern.tasks WHERE jobid = $1", gone)
	lock.Release(t)
	require.Contains(t, testkit.RequireFailedWithSQLState(t, alice, a, "55000"), dependsOnMessage(gone, "no longer exists"))
}
