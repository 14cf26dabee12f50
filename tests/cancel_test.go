package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Tests of lantern.cancel_task(jobid) and lantern.cancel_all_async_tasks().

// requireStopsRunning waits at most cancelBound for rt's worker to stop
// running rt's query.
func requireStopsRunning(t *testing.T, su *pgx.Conn, rt runningTask) {
	t.Helper()
	requirePoll(t, cancelBound, fmt.Sprintf("worker %d to stop running %q", rt.pid, rt.query), stoppedRunning(su, rt))
}

func TestCancelPendingTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	marker := markerTable(t, su, "cancel_pending", "alice")

	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	id := submit(t, alice, markerInsert(marker, 1))
	require.Equal(t, "pending", deref(getTask(t, su, id).Status), "every worker is busy: the task must be pending")

	requireCancelTask(t, alice, id, true)
	// A pending task is canceled at once, and recorded like a canceled
	// running one (SQLSTATE 57014).
	r := getTask(t, alice, id)
	requireCanceledRow(t, r, "57014")

	lock.release(t)
	requireSucceeded(t, su, blockers...)
	// A later task of the same role finished: the launcher and a worker of
	// alice have been through the queue since.
	requireSucceeded(t, alice, submit(t, alice, markerInsert(marker, 2)))
	require.Equal(t, []int{2}, markerValues(t, marker), "the canceled task must never run")
	require.Equal(t, r, getTask(t, alice, id), "the canceled row must stay as it was")
}

func TestCancelRunningTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	marker := markerTable(t, su, "cancel_running", "alice")

	submitted := time.Now()
	rt := startTask(t, su, alice, sleepQuery(60, "cancel_running"))

	requireCancelTask(t, alice, rt.id, true)
	requireStopsRunning(t, su, rt)

	r := requireCanceled(t, alice, rt.id, "57014")
	require.Less(t, *r.Duration, time.Since(submitted).Seconds()+1, "duration of the canceled task")
	require.Less(t, *r.Duration, 60.0, "the task must not have slept its 60 s")

	// The worker (and the role's next task) keeps working.
	requireSucceeded(t, alice, submit(t, alice, markerInsert(marker, 1)))
	require.Equal(t, []int{1}, markerValues(t, marker))
}

func TestCancelMultiStatementRollsBack(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	tbl := ident(t, uniq("c1"))

	rt := startTask(t, su, alice, fmt.Sprintf("CREATE TABLE %s(a int); SELECT pg_sleep(60)", tbl))
	// The first statement has run (uncommitted) by the time the sleep is
	// reached; wait for the sleep itself.
	requirePoll(t, waitTimeout, "the task to be sleeping", whileConnected(su, func() (bool, string) {
		var ev *string
		if err := su.QueryRow(context.Background(),
			"SELECT wait_event FROM pg_stat_activity WHERE pid = $1", rt.pid).Scan(&ev); err != nil {
			return false, err.Error()
		}
		return deref(ev) == "PgSleep", fmt.Sprintf("wait_event=%q", deref(ev))
	}))

	requireCancelTask(t, alice, rt.id, true)
	requireCanceled(t, alice, rt.id, "57014")
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
	canceled := startTask(t, su, alice, sleepQuery(60, "cancel_finished")).id
	requireCancelTask(t, alice, canceled, true)
	requireCanceled(t, alice, canceled, "57014")

	for _, c := range []struct {
		name string
		id   int64
	}{{"succeeded", succeeded}, {"failed", failed}, {"canceled", canceled}} {
		before := getTask(t, su, c.id)
		beforeState := taskSQLState(t, c.id)
		requireCancelTask(t, alice, c.id, false)
		requireCancelTask(t, su, c.id, false)
		require.Equal(t, before, getTask(t, su, c.id), "%s row must be unchanged by cancel_task", c.name)
		require.Equal(t, beforeState, taskSQLState(t, c.id), "%s task_errors row must be unchanged", c.name)
	}

	// A jobid that does not exist.
	missing := queryOne[int64](t, su, "SELECT coalesce(max(jobid), 0) + 1000000 FROM lantern.tasks")
	requireCancelTask(t, alice, missing, false)
	requireCancelTask(t, su, missing, false)
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
	marker := markerTable(t, su, "cancel_foreign", "alice")

	t.Run("another role is refused", func(t *testing.T) {
		rt := startTask(t, su, alice, fmt.Sprintf("SELECT pg_sleep(3); INSERT INTO %s VALUES (1) /* %s */", marker, uniq("foreign")))
		before := getTask(t, su, rt.id)

		_, err := cancelTask(bob, rt.id)
		pgErr := requirePgError(t, err, "42501", "bob cancels alice's task %d", rt.id)
		require.Equal(t, fmt.Sprintf("permission denied to cancel task %d", rt.id), pgErr.Message)
		t.Logf("refusal as psql shows it:\n%s", errorText(err))
		require.Equal(t, before, getTask(t, su, rt.id), "a refused cancel must leave the row unchanged")

		requireSucceeded(t, alice, rt.id)
		require.Equal(t, []int{1}, markerValues(t, marker), "alice's task ran to its end")
	})

	t.Run("a member of the role may cancel", func(t *testing.T) {
		dave := newLoginRole(t, su, "dave")
		t.Cleanup(func() {
			c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = cluster.Exec(c, dbName, fmt.Sprintf("DROP ROLE IF EXISTS %s", dave))
		})
		mustExec(t, su, fmt.Sprintf("GRANT alice TO %s", dave))
		daveConn := connect(t, dave)

		rt := startTask(t, su, alice, sleepQuery(60, "cancel_by_member"))
		requireCancelTask(t, daveConn, rt.id, true)
		requireStopsRunning(t, su, rt)
		requireCanceled(t, alice, rt.id, "57014")
	})

	t.Run("the superuser may cancel", func(t *testing.T) {
		rt := startTask(t, su, alice, sleepQuery(60, "cancel_by_superuser"))
		requireCancelTask(t, su, rt.id, true)
		requireStopsRunning(t, su, rt)
		requireCanceled(t, alice, rt.id, "57014")
	})
}

// cancelAllScene is the queue TestCancelAllAsyncTasks cancels: finished
// rows of alice and bob, two running tasks of each (waiting on lock, they
// fill every worker slot) and one pending task of each. Every task inserts
// into marker once it gets past the lock.
type cancelAllScene struct {
	su, alice, bob, carol *pgx.Conn
	marker                string
	lock                  *advisoryLock
	finished              map[int64]task
	runA, runB            []int64
	pendA, pendB          int64
}

func newCancelAllScene(t *testing.T) *cancelAllScene {
	t.Helper()
	s := &cancelAllScene{su: connect(t, superuser), alice: connect(t, "alice"), bob: connect(t, "bob"), carol: connect(t, "carol")}
	su, alice, bob := s.su, s.alice, s.bob
	s.marker = markerTable(t, su, "cancel_all", "alice", "bob", "carol")
	require.Equal(t, 4, cluster.MaxWorkers(), "the test fills exactly 4 worker slots")

	// Finished rows of two roles.
	doneA := submit(t, alice, "SELECT 1")
	requireSucceeded(t, alice, doneA)
	doneB := submit(t, bob, "SELECT 1/0")
	requireFailed(t, bob, doneB)
	s.finished = map[int64]task{doneA: getTask(t, su, doneA), doneB: getTask(t, su, doneB)}

	// Running: two tasks each of alice and bob wait on an advisory lock and
	// fill every slot. Pending: one more of each.
	s.lock = holdAdvisoryLock(t)
	s.runA = []int64{submit(t, alice, s.blocked(1)), submit(t, alice, s.blocked(2))}
	s.runB = []int64{submit(t, bob, s.blocked(3)), submit(t, bob, s.blocked(4))}
	s.lock.waitBlocked(t, su, append(append([]int64{}, s.runA...), s.runB...))
	s.pendA = submit(t, alice, s.blocked(5))
	s.pendB = submit(t, bob, s.blocked(6))
	require.Equal(t, "pending", deref(getTask(t, su, s.pendA).Status))
	require.Equal(t, "pending", deref(getTask(t, su, s.pendB).Status))
	return s
}

// blocked is a task query that waits on the lock, then inserts n into the
// marker table.
func (s *cancelAllScene) blocked(n int) string {
	return s.lock.waitSQL() + "; " + markerInsert(s.marker, n)
}

func (s *cancelAllScene) requireFinishedUnchanged(t *testing.T) {
	t.Helper()
	for id, before := range s.finished {
		require.Equal(t, before, getTask(t, s.su, id), "finished task %d must be unchanged", id)
	}
}

// cancelAllAsAlice: cancel_all_async_tasks() as alice cancels only her own
// unfinished tasks; the pending one is canceled at once.
func (s *cancelAllScene) cancelAllAsAlice(t *testing.T) {
	t.Helper()
	su := s.su
	bobBefore := map[int64]task{}
	for _, id := range s.runB {
		bobBefore[id] = getTask(t, su, id)
	}

	mustExec(t, s.alice, "SELECT lantern.cancel_all_async_tasks()")
	requireCanceledRow(t, getTask(t, su, s.pendA), "")
	for _, id := range s.runA {
		requireCanceled(t, s.alice, id, "57014")
	}
	for id, before := range bobBefore {
		require.Equal(t, before, getTask(t, su, id), "bob's running task %d must be untouched by alice's cancel_all", id)
	}
	// bob's pending task is not canceled: it stays pending or gets one of
	// the slots alice's tasks left (and then waits on the lock).
	require.Contains(t, []string{"pending", "running"}, deref(getTask(t, su, s.pendB).Status),
		"bob's pending task must be untouched by alice's cancel_all")
	s.requireFinishedUnchanged(t)
}

// cancelAllAsSuperuser adds carol's tasks (one that will be running, one
// pending behind the others); cancel_all_async_tasks() as the superuser
// then cancels everybody's unfinished tasks.
func (s *cancelAllScene) cancelAllAsSuperuser(t *testing.T) {
	t.Helper()
	su, carol := s.su, s.carol
	runC := submit(t, carol, s.blocked(7))
	s.lock.waitBlocked(t, su, []int64{s.runB[0], s.runB[1], s.pendB, runC})
	pendC := submit(t, carol, s.blocked(8))
	require.Equal(t, "pending", deref(getTask(t, su, pendC).Status))

	mustExec(t, su, "SELECT lantern.cancel_all_async_tasks()")
	for _, id := range []int64{s.runB[0], s.runB[1], s.pendB, runC} {
		requireCanceled(t, su, id, "57014")
	}
	requireCanceled(t, su, pendC, "")
	s.requireFinishedUnchanged(t)
	require.Equal(t, 0, queryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE status IN ('pending', 'running')"),
		"nothing unfinished after the superuser's cancel_all")
}

func TestCancelAllAsyncTasks(t *testing.T) {
	begin(t)
	s := newCancelAllScene(t)
	s.cancelAllAsAlice(t)
	s.cancelAllAsSuperuser(t)

	s.lock.release(t)
	requireSucceeded(t, s.carol, submit(t, s.carol, markerInsert(s.marker, 100)))
	require.Equal(t, []int{100}, markerValues(t, s.marker), "no canceled task may have run")
}

func TestAdminPgCancelBackend(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	marker := markerTable(t, su, "admin_cancel", "alice")

	rt := startTask(t, su, alice, sleepQuery(60, "admin_cancel"))
	require.True(t, queryOne[bool](t, su, "SELECT pg_cancel_backend($1)", rt.pid))

	status, msg := waitTask(t, alice, rt.id)
	require.Equal(t, "failed", status, "a pg_cancel_backend() is not a cancel_task(): error_message %q", msg)
	require.Equal(t, "ERROR:  canceling statement due to user request", msg)
	require.Equal(t, "57014", taskSQLState(t, rt.id))

	requireSucceeded(t, alice, submit(t, alice, markerInsert(marker, 1)))
	require.Equal(t, []int{1}, markerValues(t, marker))
}

// waitAllFinal waits until every task of ids has a final status.
func waitAllFinal(t *testing.T, su *pgx.Conn, ids []int64) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("all %d tasks to reach a final status", len(ids)), whileConnected(su, func() (bool, string) {
		st, err := statusesOf(su, ids)
		if err != nil {
			return false, err.Error()
		}
		var open []string
		for i, s := range st {
			if !isFinal(s) {
				open = append(open, fmt.Sprintf("%d:%s", ids[i], s))
			}
		}
		return len(open) == 0, fmt.Sprintf("unfinished: %v", open)
	}))
}
