package cancel

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cancel_task() and cancel_all_async_tasks() never keep a row lock that a
// worker would wait for, and never wait for one a user holds (README,
// "Cancel"). A claim under way is simulated by a superuser transaction that
// marks the pending task 'running' (what a worker's claim does before it
// commits), while every worker slot is busy so that no worker touches it.

// bgCall is a statement run in a goroutine; done is closed when it returns.
type bgCall struct {
	done chan struct{}
	ok   *bool
	err  error
}

func startCall(f func() (*bool, error)) *bgCall {
	c := &bgCall{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.ok, c.err = f()
	}()
	return c
}

func (c *bgCall) finished() (bool, string) {
	select {
	case <-c.done:
		return true, ""
	default:
		return false, "still running"
	}
}

// claimRace is a pending task of role, a transaction of role that is open
// (cancelTx, on conn) and a superuser transaction that is claiming the
// task (claim, uncommitted).
type claimRace struct {
	id       int64
	conn     *pgx.Conn
	cancelTx *testkit.HeldTx
	claim    *testkit.HeldTx
	lock     *testkit.AdvisoryLock
	blockers []int64
}

// before, when not nil, runs on the role's connection once every worker is
// busy, before the task is submitted.
func newClaimRace(t *testing.T, su *pgx.Conn, role string, before func(conn *pgx.Conn)) *claimRace {
	t.Helper()
	r := &claimRace{lock: testkit.HoldAdvisoryLock(t), conn: testkit.Connect(t, role)}
	r.blockers = r.lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	if before != nil {
		before(r.conn)
	}
	r.id = testkit.Submit(t, r.conn, "SELECT 1")
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, r.id).Status), "every worker is busy: the task must be pending")
	// Runs after the role's transaction ended (cleanups run last-registered
	// first): no 'running' row without a worker stays behind.
	t.Cleanup(func() { testkit.CleanupExec(t, r.failFakeRunSQL()) })
	r.cancelTx = testkit.BeginHeld(t, r.conn)
	claimer := testkit.Connect(t, testkit.Superuser)
	r.claim = testkit.BeginHeld(t, claimer)
	testkit.MustExec(t, claimer, "UPDATE lantern.tasks SET status = 'running' WHERE jobid = $1", r.id)
	return r
}

func (r *claimRace) failFakeRunSQL() string {
	return fmt.Sprintf("UPDATE lantern.tasks SET status = 'failed', error_message = 'test: claimed by no worker' "+
		"WHERE jobid = %d AND status = 'running'", r.id)
}

// requireUnlocked asserts that the role's open transaction holds no lock on
// the task's row: a row lock makes the locker's xid the row's xmax. (Not a
// NOWAIT lock attempt: once the fake claim commits, a 'running' row with no
// worker is a lost task to a scout, whose lock would be blamed on the role.)
func (r *claimRace) requireUnlocked(t *testing.T, su *pgx.Conn, after string) {
	t.Helper()
	held := testkit.QueryOne[bool](t, su, `SELECT coalesce(a.backend_xid = t.xmax, false)
		FROM lantern.tasks t, pg_stat_activity a WHERE t.jobid = $1 AND a.pid = $2`, r.id, r.conn.PgConn().PID())
	require.False(t, held, "%s, the role's open transaction must hold no lock on the claimed task %d", after, r.id)
}

// finish commits the role's transaction, settles the fake claim and frees the slots.
func (r *claimRace) finish(t *testing.T, su *pgx.Conn) {
	t.Helper()
	r.cancelTx.End(t, "COMMIT")
	testkit.MustExec(t, su, r.failFakeRunSQL())
	r.lock.Release(t)
	testkit.RequireSucceeded(t, su, r.blockers...)
}

// TestCancelTaskKeepsNoLockOnTaskClaimedMeanwhile: cancel_task() of a
// pending task waits for the claim under way, then answers false (no
// worker runs it) and keeps no lock on the row, although the caller's
// transaction stays open: the worker that claimed it must update that row
// when the task ends.
func TestCancelTaskKeepsNoLockOnTaskClaimedMeanwhile(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_claimed")
	r := newClaimRace(t, su, role, nil)

	call := startCall(func() (*bool, error) { return testkit.CancelTask(r.conn, r.id) })
	pid := r.conn.PgConn().PID()
	testkit.RequirePoll(t, testkit.WaitTimeout, "cancel_task to wait for the claim's row lock", testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[string](su, "SELECT locktype FROM pg_locks WHERE pid = $1 AND NOT granted", pid)
		if done, _ := call.finished(); done {
			return true, fmt.Sprintf("cancel_task returned %v, %v without waiting", call.ok, call.err)
		}
		return err == nil && len(n) > 0, fmt.Sprintf("lock waits of %d: %v, err=%v", pid, n, err)
	}))
	r.claim.End(t, "COMMIT")
	testkit.RequirePoll(t, testkit.WaitTimeout, "cancel_task to return once the claim committed", call.finished)
	require.NoError(t, call.err, "cancel_task(%d)", r.id)
	require.NotNil(t, call.ok)
	require.False(t, *call.ok, "cancel_task(%d) of a task claimed meanwhile that no worker runs", r.id)

	r.requireUnlocked(t, su, "after cancel_task() of a task claimed meanwhile returned")
	r.finish(t, su)
}

// TestCancelAllKeepsNoLockOnTaskBeingClaimed: cancel_all_async_tasks()
// skips a row a claim under way holds (it retries for a moment, then
// returns) instead of waiting for it, and keeps no lock on it.
func TestCancelAllKeepsNoLockOnTaskBeingClaimed(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_all_claimed")
	r := newClaimRace(t, su, role, nil)

	start := time.Now()
	call := startCall(func() (*bool, error) {
		_, err := r.conn.Exec(context.Background(), "SELECT lantern.cancel_all_async_tasks()")
		return nil, err
	})
	// Blocked, the call would wait until the claim commits, which the test
	// does only afterwards. Not blocked, it retries 100 times 2 ms apart:
	// well under a second on a quiet machine, 5 s once on a saturated one.
	ok, _ := testkit.Poll(t, testkit.WaitTimeout, call.finished, "cancel_all_async_tasks() returns while a claim holds the row")
	assert.True(t, ok, "cancel_all_async_tasks() still waits %v after it was called, behind a claim's row lock",
		time.Since(start).Round(time.Millisecond))
	t.Logf("cancel_all_async_tasks() took %v", time.Since(start).Round(time.Millisecond))
	r.claim.End(t, "COMMIT")
	testkit.RequirePoll(t, testkit.WaitTimeout, "cancel_all_async_tasks() to return", call.finished)
	require.NoError(t, call.err)

	r.requireUnlocked(t, su, "after cancel_all_async_tasks() returned")
	r.finish(t, su)
}

// TestSuperuserCancelAllNotBlockedByOpenCancel: a role's cancel_task() of
// its own pending task, in a transaction it keeps open, does not make a
// superuser's cancel_all_async_tasks() wait; the role's cancel holds once
// it commits.
func TestSuperuserCancelAllNotBlockedByOpenCancel(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_all_open")
	conn := testkit.Connect(t, role)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	id := testkit.Submit(t, conn, "SELECT 1")
	tx := testkit.BeginHeld(t, conn)
	testkit.RequireCancelTask(t, conn, id, true)

	admin := testkit.Connect(t, testkit.Superuser)
	// Blocked, the call would wait for as long as the role's transaction
	// stays open. Not blocked, it skips the locked row and tries again 100
	// times, 2 ms apart: 0.3 s on a quiet machine, 5 s once on one whose
	// two cores were saturated, so the bound is the suite's wait, not 5 s.
	testkit.MustExec(t, admin, fmt.Sprintf("SET statement_timeout = '%dms'", testkit.WaitTimeout.Milliseconds()))
	start := time.Now()
	_, err := admin.Exec(testkit.Ctx(t), "SELECT lantern.cancel_all_async_tasks()")
	elapsed := time.Since(start)
	t.Logf("the superuser's cancel_all_async_tasks() took %v", elapsed.Round(time.Millisecond))
	tx.End(t, "COMMIT")
	lock.Release(t)
	for _, b := range blockers {
		testkit.WaitTask(t, su, b) // canceled by the superuser's cancel_all
	}
	require.NoError(t, err, "a superuser's cancel_all_async_tasks() waited %v behind a role's open cancel_task() (SQLSTATE %s)",
		elapsed.Round(time.Millisecond), testkit.PgCode(err))
	testkit.RequireCanceled(t, conn, id, "57014")
}

// TestCancelInRepeatableReadOfFinishedTask: cancel_task() in a REPEATABLE
// READ transaction whose snapshot predates the task's end answers false
// (finished) instead of failing to serialize (40001), and leaves the
// transaction's snapshot as it was.
func TestCancelInRepeatableReadOfFinishedTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_rr")
	conn := testkit.Connect(t, role)
	rr := testkit.Connect(t, role)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	id := testkit.Submit(t, conn, "SELECT 1")

	testkit.MustExec(t, rr, "BEGIN ISOLATION LEVEL REPEATABLE READ")
	require.Equal(t, "pending", testkit.QueryOne[string](t, rr, "SELECT status FROM lantern.tasks WHERE jobid = $1", id))
	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	testkit.RequireSucceeded(t, conn, id)

	ok, err := testkit.CancelTask(rr, id)
	require.NoError(t, err, "cancel_task(%d) of a finished task in a REPEATABLE READ transaction (SQLSTATE %s)", id, testkit.PgCode(err))
	require.NotNil(t, ok)
	require.False(t, *ok, "cancel_task(%d) of a task that succeeded", id)
	require.Equal(t, "pending", testkit.QueryOne[string](t, rr, "SELECT status FROM lantern.tasks WHERE jobid = $1", id),
		"the REPEATABLE READ snapshot is unchanged")
	testkit.MustExec(t, rr, "COMMIT")
	require.Equal(t, "succeeded", testkit.Deref(testkit.GetTask(t, su, id).Status))
}
