package tests

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// Smaller holes of issue 6 ("Medium"): a refused cancel reveals nothing,
// a NULL status breaks nothing, a task starts with a fresh random() seed.

// TestCancelPermissionNamesNoRole: cancel_task() on a task the caller may
// not cancel (running or pending) fails with 42501 "permission denied to
// cancel task N", and nothing in the error names the submitting role
// (row-level security hides the row from the caller).
func TestCancelPermissionNamesNoRole(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	victim := newTempRole(t, su, "hidden_submitter")
	vConn, bob := connect(t, victim), connect(t, "bob")
	lock := holdAdvisoryLock(t)

	// One running task of the victim, every other slot busy, one pending.
	running := submit(t, vConn, lock.waitSQL())
	all := []int64{running}
	for range cluster.MaxWorkers() - 1 {
		all = append(all, submit(t, su, lock.waitSQL()))
	}
	lock.waitBlocked(t, su, all)
	pending := submit(t, vConn, "SELECT 1")
	require.Equal(t, "pending", deref(getTask(t, su, pending).Status), "every worker is busy: the task must be pending")

	for _, c := range []struct {
		what string
		id   int64
	}{{"running", running}, {"pending", pending}} {
		before := getTask(t, su, c.id)
		_, err := cancelTask(bob, c.id)
		pgErr := requirePgError(t, err, "42501", "bob cancels the %s task %d of %s", c.what, c.id, victim)
		t.Logf("refusal as psql shows it:\n%s", errorText(err))
		require.Equal(t, fmt.Sprintf("permission denied to cancel task %d", c.id), pgErr.Message)
		for field, text := range map[string]string{
			"message": pgErr.Message, "detail": pgErr.Detail, "hint": pgErr.Hint, "context": pgErr.Where,
		} {
			require.NotContains(t, text, victim, "the %s of the refusal names the submitting role", field)
		}
		require.Equal(t, before, getTask(t, su, c.id), "a refused cancel must leave the %s row unchanged", c.what)
	}

	lock.release(t)
	requireSucceeded(t, su, all...)
	requireSucceeded(t, vConn, pending)
}

// TestNullStatusRowIsHarmless: a row with status NULL (a superuser's
// insert; the column is nullable) never runs and breaks nothing: the
// role's and other roles' tasks keep running, cancel_task() on it returns
// false for a superuser (the role did not submit it through async_task, so
// it may not cancel it: 42501), cancel_all_async_tasks() of its role does
// not fail, and the launcher stays healthy (begin's check at the end).
func TestNullStatusRowIsHarmless(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "null_status")
	marker := markerTable(t, su, "null_status", role)
	conn := connect(t, role)
	id := queryOne[int64](t, su, `
		INSERT INTO lantern.tasks (query, username, status) VALUES ($1, $2, NULL) RETURNING jobid`,
		markerInsert(marker, 1), role)

	requireSucceeded(t, conn, submit(t, conn, markerInsert(marker, 2)))
	alice := connect(t, "alice")
	requireSucceeded(t, alice, submit(t, alice, "SELECT 1"))

	requireCancelTask(t, su, id, false)
	_, err := cancelTask(conn, id)
	requirePgError(t, err, "42501", "cancel_task of a row the role did not submit")
	mustExec(t, conn, "SELECT lantern.cancel_all_async_tasks()")

	requireSucceeded(t, conn, submit(t, conn, markerInsert(marker, 3)))
	require.Equal(t, []int{2, 3}, markerValues(t, marker), "the NULL-status row must never run")
	st := deref(getTask(t, su, id).Status)
	require.NotContains(t, []string{"pending", "running", "succeeded", "canceled"}, st,
		"status of the NULL-status row (cancel_task returned false for it)")
}

// TestTaskRandomSeedIsFresh: a task's setseed() does not carry over to the
// next task run by the same worker: that task's random() differs from what
// random() gives right after setseed(0.5) in a session.
func TestTaskRandomSeedIsFresh(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "seed")
	tbl := ident(t, uniq("seed_marker"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %[1]s(label text, r float8, pid int); GRANT SELECT, INSERT ON %[1]s TO %[2]s", tbl, role))
	// One free worker slot: one worker runs both tasks, in jobid order.
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers()-1)

	conn := connect(t, role)
	tx, err := conn.Begin(ctx(t))
	require.NoError(t, err)
	seed := submit(t, tx, fmt.Sprintf("SELECT setseed(0.5); INSERT INTO %s(label, pid) VALUES ('seed', pg_backend_pid())", tbl))
	next := submit(t, tx, fmt.Sprintf("INSERT INTO %s(label, r, pid) SELECT 'next', random(), pg_backend_pid()", tbl))
	require.NoError(t, tx.Commit(ctx(t)))
	requireSucceeded(t, conn, seed, next)

	var seedPid, nextPid int
	var got float64
	require.NoError(t, su.QueryRow(ctx(t), fmt.Sprintf(
		"SELECT s.pid, n.pid, n.r FROM %[1]s s, %[1]s n WHERE s.label = 'seed' AND n.label = 'next'", tbl)).Scan(
		&seedPid, &nextPid, &got))
	require.Equal(t, seedPid, nextPid, "precondition: one worker process ran both tasks")

	mustExec(t, conn, "SELECT setseed(0.5)")
	seeded := queryOne[float64](t, conn, "SELECT random()")
	require.NotEqual(t, seeded, got,
		"random() in the task after a task that ran setseed(0.5): the seed carried over from the previous task")

	lock.release(t)
	requireSucceeded(t, su, blockers...)
}
