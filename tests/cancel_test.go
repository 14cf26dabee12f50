package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of lantern.cancel_task(jobid) and lantern.cancel_all_async_tasks().
// Helpers of this file start with "cnl" so that they cannot collide with
// helpers written in other files at the same time.

const cnlCanceledMessage = "Canceled by user"

// cnlFinal reports whether status is one a task never leaves.
func cnlFinal(status string) bool {
	return status == "succeeded" || status == "failed" || status == "canceled"
}

// cnlWaitDone is waitTask that also accepts 'canceled' as a final status.
func cnlWaitDone(t *testing.T, conn *pgx.Conn, jobid int64) (status, errMsg string) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("task %d to reach a final status", jobid), func() (bool, string) {
		if l, msg := lost(conn); l {
			return l, msg
		}
		var st, em *string
		err := conn.QueryRow(context.Background(),
			"SELECT status, error_message FROM lantern.tasks WHERE jobid = $1", jobid).Scan(&st, &em)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, "no row visible"
		}
		if err != nil {
			return false, "query error: " + err.Error()
		}
		if cnlFinal(deref(st)) {
			status, errMsg = deref(st), deref(em)
			return true, ""
		}
		return false, fmt.Sprintf("status=%q error_message=%q", deref(st), deref(em))
	})
	return status, errMsg
}

// cnlRequireCanceled waits for the task and asserts the whole outcome of a
// task stopped by cancel_task: status, message, duration and (when
// wantSQLState is not empty) the lantern.task_errors row.
func cnlRequireCanceled(t *testing.T, conn *pgx.Conn, jobid int64, wantSQLState string) task {
	t.Helper()
	status, msg := cnlWaitDone(t, conn, jobid)
	require.Equal(t, "canceled", status, "task %d (error_message %q)", jobid, msg)
	r := getTask(t, nil, jobid)
	require.Equal(t, cnlCanceledMessage, deref(r.ErrorMessage), "error_message of canceled task %d", jobid)
	require.NotNil(t, r.Duration, "duration of canceled task %d", jobid)
	require.GreaterOrEqual(t, *r.Duration, 0.0, "duration of canceled task %d", jobid)
	if wantSQLState != "" {
		require.Equal(t, wantSQLState, taskSQLState(t, jobid), "lantern.task_errors.sqlstate of canceled task %d", jobid)
	}
	return r
}

// cnlWaitActive waits until the task is 'running' and a lantern_async worker
// shows its query as 'active' in pg_stat_activity; it returns that worker's pid.
func cnlWaitActive(t *testing.T, su *pgx.Conn, jobid int64, query string) int32 {
	t.Helper()
	var pid int32
	requirePoll(t, waitTimeout, fmt.Sprintf("task %d running in a %s", jobid, backendWorker), func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		var st *string
		if err := su.QueryRow(context.Background(),
			"SELECT status FROM lantern.tasks WHERE jobid = $1", jobid).Scan(&st); err != nil {
			return false, "read task: " + err.Error()
		}
		var pids []int32
		rows, err := su.Query(context.Background(), `
			SELECT pid FROM pg_stat_activity
			WHERE backend_type = $1 AND state = 'active' AND query = $2`, backendWorker, query)
		if err != nil {
			return false, err.Error()
		}
		pids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return false, err.Error()
		}
		if deref(st) == "running" && len(pids) == 1 {
			pid = pids[0]
			return true, ""
		}
		return false, fmt.Sprintf("status=%q, active worker pids with the query: %v", deref(st), pids)
	})
	// A test that fails half-way must not leave a long sleeper behind.
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cluster.Exec(c, dbName, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND query = $2`, pid, query)
	})
	return pid
}

// cnlCancel calls lantern.cancel_task(jobid) through conn.
func cnlCancel(conn *pgx.Conn, jobid int64) (*bool, error) {
	var ok *bool
	err := conn.QueryRow(context.Background(), "SELECT lantern.cancel_task($1)", jobid).Scan(&ok)
	return ok, err
}

// cnlRequireCancel asserts cancel_task(jobid) through conn returns want.
func cnlRequireCancel(t *testing.T, conn *pgx.Conn, jobid int64, want bool) {
	t.Helper()
	got, err := cnlCancel(conn, jobid)
	require.NoError(t, err, "lantern.cancel_task(%d)", jobid)
	require.NotNil(t, got, "lantern.cancel_task(%d) returned NULL", jobid)
	require.Equal(t, want, *got, "lantern.cancel_task(%d)", jobid)
}

// cnlMarker creates a marker table writable by roles.
func cnlMarker(t *testing.T, su *pgx.Conn, base string, roles ...string) string {
	t.Helper()
	tbl := ident(t, uniq(base))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	if len(roles) > 0 {
		mustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO %s", tbl, strings.Join(roles, ", ")))
	}
	return tbl
}

// cnlSleepQuery is a long query text unique to this test run, so that its
// pg_stat_activity row can be told apart.
func cnlSleepQuery(seconds int, tag string) string {
	return fmt.Sprintf("SELECT pg_sleep(%d) /* %s */", seconds, uniq(tag))
}

// cnlRequireNotActive waits at most one second for pid to stop showing query
// as 'active'.
func cnlRequireNotActive(t *testing.T, su *pgx.Conn, pid int32, query string) {
	t.Helper()
	requirePoll(t, time.Second, fmt.Sprintf("worker %d to stop running %q", pid, query), func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		var n int
		if err := su.QueryRow(context.Background(), `
			SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = $2`,
			pid, query).Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == 0, fmt.Sprintf("%d active rows", n)
	})
}

// cnlBlockAllWorkers occupies every worker slot with superuser tasks waiting
// on an advisory lock held by a separate connection; the returned function
// releases them and waits for them to succeed.
func cnlBlockAllWorkers(t *testing.T, su *pgx.Conn) (release func()) {
	t.Helper()
	lockConn := connect(t, superuser)
	key := 7_000_000 + nameCounter.Add(1)
	mustExec(t, lockConn, "SELECT pg_advisory_lock($1)", key)
	var blockers []int64
	for range cluster.MaxWorkers() {
		blockers = append(blockers, submit(t, su, fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", key)))
	}
	waitBlocked(t, su, blockers, key)
	released := false
	t.Cleanup(func() {
		if !released {
			_, _ = lockConn.Exec(context.Background(), "SELECT pg_advisory_unlock_all()")
		}
	})
	return func() {
		t.Helper()
		mustExec(t, lockConn, "SELECT pg_advisory_unlock($1)", key)
		released = true
		for _, id := range blockers {
			requireSucceeded(t, su, id)
		}
	}
}

func TestCancelPendingTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	marker := cnlMarker(t, su, "cancel_pending", "alice")

	release := cnlBlockAllWorkers(t, su)
	id := submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (1)", marker))
	require.Equal(t, "pending", deref(getTask(t, su, id).Status), "every worker is busy: the task must be pending")

	cnlRequireCancel(t, alice, id, true)
	// A pending task is canceled at once.
	r := getTask(t, alice, id)
	require.Equal(t, "canceled", deref(r.Status))
	require.Equal(t, cnlCanceledMessage, deref(r.ErrorMessage))
	require.NotNil(t, r.Duration, "duration of a canceled pending task")
	require.GreaterOrEqual(t, *r.Duration, 0.0)
	if s := taskSQLState(t, id); s != "57014" {
		t.Logf("observation: lantern.task_errors.sqlstate of a task canceled while pending is %q (a running one gets 57014)", s)
	}

	release()
	// A later task of the same role finished: the dispatcher and a worker of
	// alice have been through the queue since.
	later := submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (2)", marker))
	requireSucceeded(t, alice, later)
	require.Equal(t, []int{2}, markerValues(t, marker), "the canceled task must never run")
	require.Equal(t, r, getTask(t, alice, id), "the canceled row must stay as it was")
}

func TestCancelRunningTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	marker := cnlMarker(t, su, "cancel_running", "alice")

	q := cnlSleepQuery(60, "cancel_running")
	submitted := time.Now()
	id := submit(t, alice, q)
	pid := cnlWaitActive(t, su, id, q)

	cnlRequireCancel(t, alice, id, true)
	cnlRequireNotActive(t, su, pid, q)

	r := cnlRequireCanceled(t, alice, id, "57014")
	require.Less(t, *r.Duration, time.Since(submitted).Seconds()+1, "duration of the canceled task")
	require.Less(t, *r.Duration, 60.0, "the task must not have slept its 60 s")

	// The worker (and the role's next task) keeps working.
	next := submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (1)", marker))
	requireSucceeded(t, alice, next)
	require.Equal(t, []int{1}, markerValues(t, marker))
}

func TestCancelMultiStatementRollsBack(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	tbl := ident(t, uniq("c1"))

	q := fmt.Sprintf("CREATE TABLE %s(a int); SELECT pg_sleep(60)", tbl)
	id := submit(t, alice, q)
	pid := cnlWaitActive(t, su, id, q)
	// The first statement has run (uncommitted) by the time the sleep is
	// reached; wait for the sleep itself.
	requirePoll(t, waitTimeout, "the task to be sleeping", func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		var ev *string
		if err := su.QueryRow(context.Background(),
			"SELECT wait_event FROM pg_stat_activity WHERE pid = $1", pid).Scan(&ev); err != nil {
			return false, err.Error()
		}
		return deref(ev) == "PgSleep", fmt.Sprintf("wait_event=%q", deref(ev))
	})

	cnlRequireCancel(t, alice, id, true)
	cnlRequireCanceled(t, alice, id, "57014")
	require.False(t, tableExists(t, tbl), "the canceled string must leave no table %s", tbl)
}

func TestCancelFinishedTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")

	succeeded := submit(t, alice, "SELECT 1")
	requireSucceeded(t, alice, succeeded)
	failed := submit(t, alice, "SELECT 1/0")
	requireFailed(t, alice, failed)
	q := cnlSleepQuery(60, "cancel_finished")
	canceled := submit(t, alice, q)
	cnlWaitActive(t, su, canceled, q)
	cnlRequireCancel(t, alice, canceled, true)
	cnlRequireCanceled(t, alice, canceled, "57014")

	for _, c := range []struct {
		name string
		id   int64
	}{{"succeeded", succeeded}, {"failed", failed}, {"canceled", canceled}} {
		before := getTask(t, su, c.id)
		beforeState := taskSQLState(t, c.id)
		cnlRequireCancel(t, alice, c.id, false)
		cnlRequireCancel(t, su, c.id, false)
		require.Equal(t, before, getTask(t, su, c.id), "%s row must be unchanged by cancel_task", c.name)
		require.Equal(t, beforeState, taskSQLState(t, c.id), "%s task_errors row must be unchanged", c.name)
	}

	// A jobid that does not exist.
	missing := queryOne[int64](t, su, "SELECT coalesce(max(jobid), 0) + 1000000 FROM lantern.tasks")
	cnlRequireCancel(t, alice, missing, false)
	cnlRequireCancel(t, su, missing, false)
	require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", missing))

	// STRICT: NULL in, NULL out.
	var res *bool
	require.NoError(t, alice.QueryRow(ctx(t), "SELECT lantern.cancel_task(NULL)").Scan(&res))
	require.Nil(t, res, "lantern.cancel_task(NULL)")
}

func TestCancelForeignTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	bob := connect(t, "bob")
	marker := cnlMarker(t, su, "cancel_foreign", "alice")

	t.Run("another role is refused", func(t *testing.T) {
		q := fmt.Sprintf("SELECT pg_sleep(3); INSERT INTO %s VALUES (1) /* %s */", marker, uniq("foreign"))
		id := submit(t, alice, q)
		cnlWaitActive(t, su, id, q)
		before := getTask(t, su, id)

		_, err := cnlCancel(bob, id)
		pgErr := requirePgError(t, err, "42501", "bob cancels alice's task %d", id)
		require.Equal(t, fmt.Sprintf("permission denied to cancel task %d", id), pgErr.Message)
		t.Logf("refusal as psql shows it:\n%s", errorText(err))
		require.Equal(t, before, getTask(t, su, id), "a refused cancel must leave the row unchanged")

		requireSucceeded(t, alice, id)
		require.Equal(t, []int{1}, markerValues(t, marker), "alice's task ran to its end")
	})

	t.Run("a member of the role may cancel", func(t *testing.T) {
		dave := ident(t, uniq("dave"))
		mustExec(t, su, fmt.Sprintf("CREATE ROLE %s LOGIN", dave))
		t.Cleanup(func() {
			c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = cluster.Exec(c, dbName, fmt.Sprintf("DROP ROLE IF EXISTS %s", dave))
		})
		mustExec(t, su, fmt.Sprintf("GRANT alice TO %s", dave))
		daveConn := connect(t, dave)

		q := cnlSleepQuery(60, "cancel_by_member")
		id := submit(t, alice, q)
		pid := cnlWaitActive(t, su, id, q)
		cnlRequireCancel(t, daveConn, id, true)
		cnlRequireNotActive(t, su, pid, q)
		cnlRequireCanceled(t, alice, id, "57014")
	})

	t.Run("the superuser may cancel", func(t *testing.T) {
		q := cnlSleepQuery(60, "cancel_by_superuser")
		id := submit(t, alice, q)
		pid := cnlWaitActive(t, su, id, q)
		cnlRequireCancel(t, su, id, true)
		cnlRequireNotActive(t, su, pid, q)
		cnlRequireCanceled(t, alice, id, "57014")
	})
}

func TestCancelAllAsyncTasks(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	bob := connect(t, "bob")
	carol := connect(t, "carol")
	marker := cnlMarker(t, su, "cancel_all", "alice", "bob", "carol")
	require.Equal(t, 4, cluster.MaxWorkers(), "the test fills exactly 4 worker slots")

	// Finished rows of two roles.
	doneA := submit(t, alice, "SELECT 1")
	requireSucceeded(t, alice, doneA)
	doneB := submit(t, bob, "SELECT 1/0")
	requireFailed(t, bob, doneB)
	finished := map[int64]task{doneA: getTask(t, su, doneA), doneB: getTask(t, su, doneB)}

	// Running: two tasks each of alice and bob wait on an advisory lock and
	// fill every slot. Pending: one more of each.
	lockConn := connect(t, superuser)
	key := 7_500_000 + nameCounter.Add(1)
	mustExec(t, lockConn, "SELECT pg_advisory_lock($1)", key)
	t.Cleanup(func() { _, _ = lockConn.Exec(context.Background(), "SELECT pg_advisory_unlock_all()") })
	blocked := func(n int) string {
		return fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d); INSERT INTO %s VALUES (%d)", key, marker, n)
	}
	runA := []int64{submit(t, alice, blocked(1)), submit(t, alice, blocked(2))}
	runB := []int64{submit(t, bob, blocked(3)), submit(t, bob, blocked(4))}
	waitBlocked(t, su, append(append([]int64{}, runA...), runB...), key)
	pendA := submit(t, alice, blocked(5))
	pendB := submit(t, bob, blocked(6))
	require.Equal(t, "pending", deref(getTask(t, su, pendA).Status))
	require.Equal(t, "pending", deref(getTask(t, su, pendB).Status))
	bobBefore := map[int64]task{}
	for _, id := range runB {
		bobBefore[id] = getTask(t, su, id)
	}

	// alice: only her own unfinished tasks.
	mustExec(t, alice, "SELECT lantern.cancel_all_async_tasks()")
	r := getTask(t, su, pendA)
	require.Equal(t, "canceled", deref(r.Status), "alice's pending task is canceled at once")
	require.Equal(t, cnlCanceledMessage, deref(r.ErrorMessage))
	require.NotNil(t, r.Duration)
	for _, id := range runA {
		cnlRequireCanceled(t, alice, id, "57014")
	}
	for id, before := range bobBefore {
		require.Equal(t, before, getTask(t, su, id), "bob's running task %d must be untouched by alice's cancel_all", id)
	}
	// bob's pending task is not canceled: it stays pending or gets one of
	// the slots alice's tasks left (and then waits on the lock).
	require.Contains(t, []string{"pending", "running"}, deref(getTask(t, su, pendB).Status),
		"bob's pending task must be untouched by alice's cancel_all")
	for id, before := range finished {
		require.Equal(t, before, getTask(t, su, id), "finished task %d must be unchanged", id)
	}

	// carol: one task that will be running, one pending behind the others.
	runC := submit(t, carol, blocked(7))
	waitBlocked(t, su, []int64{runB[0], runB[1], pendB, runC}, key)
	pendC := submit(t, carol, blocked(8))
	require.Equal(t, "pending", deref(getTask(t, su, pendC).Status))

	// The superuser: everybody's unfinished tasks.
	mustExec(t, su, "SELECT lantern.cancel_all_async_tasks()")
	for _, id := range []int64{runB[0], runB[1], pendB, runC} {
		cnlRequireCanceled(t, su, id, "57014")
	}
	cnlRequireCanceled(t, su, pendC, "")
	for id, before := range finished {
		require.Equal(t, before, getTask(t, su, id), "finished task %d must be unchanged", id)
	}
	require.Equal(t, 0, queryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE status IN ('pending', 'running')"),
		"nothing unfinished after the superuser's cancel_all")

	mustExec(t, lockConn, "SELECT pg_advisory_unlock($1)", key)
	after := submit(t, carol, fmt.Sprintf("INSERT INTO %s VALUES (100)", marker))
	requireSucceeded(t, carol, after)
	require.Equal(t, []int{100}, markerValues(t, marker), "no canceled task may have run")
}

func TestAdminPgCancelBackend(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	marker := cnlMarker(t, su, "admin_cancel", "alice")

	q := cnlSleepQuery(60, "admin_cancel")
	id := submit(t, alice, q)
	pid := cnlWaitActive(t, su, id, q)
	require.True(t, queryOne[bool](t, su, "SELECT pg_cancel_backend($1)", pid))

	status, msg := cnlWaitDone(t, alice, id)
	require.Equal(t, "failed", status, "a pg_cancel_backend() is not a cancel_task(): error_message %q", msg)
	require.Equal(t, "ERROR:  canceling statement due to user request", msg)
	require.Equal(t, "57014", taskSQLState(t, id))

	next := submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (1)", marker))
	requireSucceeded(t, alice, next)
	require.Equal(t, []int{1}, markerValues(t, marker))
}

// TestCancelRaceWithClaim cancels each task right after committing it, while
// a worker may be claiming it: every task must end either canceled (and
// without effect) or succeeded (with its effect), never both, never stuck.
func TestCancelRaceWithClaim(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	marker := cnlMarker(t, su, "cancel_race", "alice")

	const n = 50
	ids := make([]int64, n)
	returned := make([]bool, n)
	for i := range n {
		// Some tasks have a short tail after the insert, so that a few cancels
		// land while the string runs rather than before or after it.
		q := fmt.Sprintf("INSERT INTO %s VALUES (%d)", marker, i)
		if i%3 == 2 {
			q += "; SELECT pg_sleep(0.02)"
		}
		ids[i] = submit(t, alice, q)
		// Half of the cancels follow the commit at once; the others are
		// spread over the next 0-18 ms on the server side, across the window
		// in which a worker starts, claims and runs the task.
		var got *bool
		var err error
		if i%2 == 0 {
			got, err = cnlCancel(alice, ids[i])
		} else {
			delay := float64((i/2)%10) * 0.002
			err = alice.QueryRow(ctx(t),
				"SELECT lantern.cancel_task($1) FROM (SELECT pg_sleep($2)) AS d", ids[i], delay).Scan(&got)
		}
		require.NoError(t, err, "cancel_task(%d)", ids[i])
		require.NotNil(t, got)
		returned[i] = *got
	}

	present := map[int]int{}
	for _, v := range cnlMarkerAfterAll(t, su, marker, ids) {
		present[v]++
	}
	var nCanceled, nSucceeded, nTrueSucceeded int
	for i, id := range ids {
		r := getTask(t, su, id)
		st := deref(r.Status)
		switch st {
		case "canceled":
			nCanceled++
			assert.Equal(t, cnlCanceledMessage, deref(r.ErrorMessage), "task %d", id)
			assert.NotNil(t, r.Duration, "task %d", id)
			assert.Zero(t, present[i], "task %d (marker %d) is canceled but its insert is present", id, i)
			assert.True(t, returned[i], "task %d is canceled but cancel_task returned false", id)
		case "succeeded":
			nSucceeded++
			if returned[i] {
				nTrueSucceeded++
			}
			assert.Nil(t, r.ErrorMessage, "task %d", id)
			assert.Equal(t, 1, present[i], "task %d (marker %d) succeeded: its insert must be present once", id, i)
		default:
			t.Errorf("task %d ended %q (error_message %q): want canceled or succeeded", id, st, deref(r.ErrorMessage))
		}
	}
	t.Logf("%d canceled, %d succeeded (%d of them although cancel_task returned true)", nCanceled, nSucceeded, nTrueSucceeded)
	require.Equal(t, n, nCanceled+nSucceeded)

	// The worker still works afterwards.
	after := submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (%d)", marker, 1000))
	requireSucceeded(t, alice, after)
}

// cnlMarkerAfterAll waits until every task of ids is final, then
// returns the marker table's contents.
func cnlMarkerAfterAll(t *testing.T, su *pgx.Conn, marker string, ids []int64) []int {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("all %d tasks to reach a final status", len(ids)), func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		st, err := statusesOf(su, ids)
		if err != nil {
			return false, err.Error()
		}
		var open []string
		for i, s := range st {
			if !cnlFinal(s) {
				open = append(open, fmt.Sprintf("%d:%s", ids[i], s))
			}
		}
		return len(open) == 0, fmt.Sprintf("unfinished: %v", open)
	})
	return markerValues(t, marker)
}
