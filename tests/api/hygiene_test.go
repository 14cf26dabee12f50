package api

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// Small holes closed: a refused cancel reveals nothing,
// a NULL status breaks nothing, a task starts with a fresh random() seed.

// TestCancelPermissionNamesNoRole: cancel_task() on a task the caller may
// not cancel (running or pending) fails with 42501 "permission denied to
// cancel task N", and nothing in the error names the submitting role
// (row-level security hides the row from the caller).
func TestCancelPermissionNamesNoRole(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	victim := testkit.NewTempRole(t, su, "hidden_submitter")
	vConn, bob := testkit.Connect(t, victim), testkit.Connect(t, "bob")
	lock := testkit.HoldAdvisoryLock(t)

	// One running task of the victim, every other slot busy, one pending.
	running := testkit.Submit(t, vConn, lock.WaitSQL())
	all := []int64{running}
	for range testkit.Cluster.MaxWorkers() - 1 {
		all = append(all, testkit.Submit(t, su, lock.WaitSQL()))
	}
	lock.WaitBlocked(t, su, all)
	pending := testkit.Submit(t, vConn, "SELECT 1")
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, pending).Status), "every worker is busy: the task must be pending")

	for _, c := range []struct {
		what string
		id   int64
	}{{"running", running}, {"pending", pending}} {
		before := testkit.GetTask(t, su, c.id)
		_, err := testkit.CancelTask(bob, c.id)
		pgErr := testkit.RequirePgError(t, err, "42501", "bob cancels the %s task %d of %s", c.what, c.id, victim)
		t.Logf("refusal as psql shows it:\n%s", testkit.ErrorText(err))
		require.Equal(t, fmt.Sprintf("permission denied to cancel task %d", c.id), pgErr.Message)
		for field, text := range map[string]string{
			"message": pgErr.Message, "detail": pgErr.Detail, "hint": pgErr.Hint, "context": pgErr.Where,
		} {
			require.NotContains(t, text, victim, "the %s of the refusal names the submitting role", field)
		}
		require.Equal(t, before, testkit.GetTask(t, su, c.id), "a refused cancel must leave the %s row unchanged", c.what)
	}

	lock.Release(t)
	testkit.RequireSucceeded(t, su, all...)
	testkit.RequireSucceeded(t, vConn, pending)
}

// TestNullStatusRowIsHarmless: a row with status NULL (a superuser's
// insert; the column is nullable) never runs and breaks nothing: the
// role's and other roles' tasks keep running, cancel_task() on it returns
// false for a superuser (the role did not submit it through async_task, so
// it may not cancel it: 42501), cancel_all_async_tasks() of its role does
// not fail, and the launcher stays healthy (begin's check at the end).
func TestNullStatusRowIsHarmless(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "null_status")
	marker := testkit.MarkerTable(t, su, "null_status", role)
	conn := testkit.Connect(t, role)
	id := testkit.QueryOne[int64](t, su, `
		INSERT INTO lantern.tasks (query, username, status) VALUES ($1, $2, NULL) RETURNING jobid`,
		testkit.MarkerInsert(marker, 1), role)

	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, testkit.MarkerInsert(marker, 2)))
	alice := testkit.Connect(t, "alice")
	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))

	testkit.RequireCancelTask(t, su, id, false)
	_, err := testkit.CancelTask(conn, id)
	testkit.RequirePgError(t, err, "42501", "cancel_task of a row the role did not submit")
	testkit.MustExec(t, conn, "SELECT lantern.cancel_all_async_tasks()")

	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, testkit.MarkerInsert(marker, 3)))
	require.Equal(t, []int{2, 3}, testkit.MarkerValues(t, marker), "the NULL-status row must never run")
	st := testkit.Deref(testkit.GetTask(t, su, id).Status)
	require.NotContains(t, []string{"pending", "running", "succeeded", "canceled"}, st,
		"status of the NULL-status row (cancel_task returned false for it)")
}

// TestTaskRandomSeedIsFresh: a task's setseed() does not carry over to the
// next task run by the same worker: that task's random() differs from what
// random() gives right after setseed(0.5) in a session.
func TestTaskRandomSeedIsFresh(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "seed")
	tbl := testkit.Ident(t, testkit.Uniq("seed_marker"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %[1]s(label text, r float8, pid int); GRANT SELECT, INSERT ON %[1]s TO %[2]s", tbl, role))
	// One free worker slot: one worker runs both tasks, in jobid order.
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)

	conn := testkit.Connect(t, role)
	tx, err := conn.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	seed := testkit.Submit(t, tx, fmt.Sprintf("SELECT setseed(0.5); INSERT INTO %s(label, pid) VALUES ('seed', pg_backend_pid())", tbl))
	next := testkit.Submit(t, tx, fmt.Sprintf("INSERT INTO %s(label, r, pid) SELECT 'next', random(), pg_backend_pid()", tbl))
	require.NoError(t, tx.Commit(testkit.Ctx(t)))
	testkit.RequireSucceeded(t, conn, seed, next)

	var seedPid, nextPid int
	var got float64
	require.NoError(t, su.QueryRow(testkit.Ctx(t), fmt.Sprintf(
		"SELECT s.pid, n.pid, n.r FROM %[1]s s, %[1]s n WHERE s.label = 'seed' AND n.label = 'next'", tbl)).Scan(
		&seedPid, &nextPid, &got))
	require.Equal(t, seedPid, nextPid, "precondition: one worker process ran both tasks")

	testkit.MustExec(t, conn, "SELECT setseed(0.5)")
	seeded := testkit.QueryOne[float64](t, conn, "SELECT random()")
	require.NotEqual(t, seeded, got,
		"random() in the task after a task that ran setseed(0.5): the seed carried over from the previous task")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}
