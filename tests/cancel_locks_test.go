package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

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
	cancelTx *heldTx
	claim    *heldTx
	lock     *advisoryLock
	blockers []int64
}

func newClaimRace(t *testing.T, su *pgx.Conn, role string) *claimRace {
	t.Helper()
	r := &claimRace{lock: holdAdvisoryLock(t), conn: connect(t, role)}
	r.blockers = r.lock.blockWorkers(t, su, cluster.MaxWorkers())
	r.id = submit(t, r.conn, "SELECT 1")
	require.Equal(t, "pending", deref(getTask(t, su, r.id).Status), "every worker is busy: the task must be pending")
	// Runs after the role's transaction ended (cleanups run last-registered
	// first): no 'running' row without a worker stays behind.
	t.Cleanup(func() { cleanupExec(t, r.failFakeRunSQL()) })
	r.cancelTx = beginHeld(t, r.conn)
	claimer := connect(t, superuser)
	r.claim = beginHeld(t, claimer)
	mustExec(t, claimer, "UPDATE lantern.tasks SET status = 'running' WHERE jobid = $1", r.id)
	return r
}

func (r *claimRace) failFakeRunSQL() string {
	return fmt.Sprintf("UPDATE lantern.tasks SET status = 'failed', error_message = 'test: claimed by no worker' "+
		"WHERE jobid = %d AND status = 'running'", r.id)
}

// requireUnlocked asserts that nobody holds a lock on the task's row.
func (r *claimRace) requireUnlocked(t *testing.T, su *pgx.Conn, after string) {
	t.Helper()
	_, err := su.Exec(ctx(t), "SELECT 1 FROM lantern.tasks WHERE jobid = $1 FOR UPDATE NOWAIT", r.id)
	require.NoError(t, err, "%s, the role's open transaction must hold no lock on the claimed task %d (SQLSTATE %s)",
		after, r.id, pgCode(err))
}

// finish commits the role's transaction, settles the fake claim and frees the slots.
func (r *claimRace) finish(t *testing.T, su *pgx.Conn) {
	t.Helper()
	r.cancelTx.end(t, "COMMIT")
	mustExec(t, su, r.failFakeRunSQL())
	r.lock.release(t)
	requireSucceeded(t, su, r.blockers...)
}

// TestCancelTaskKeepsNoLockOnTaskClaimedMeanwhile: cancel_task() of a
// pending task waits for the claim under way, then answers false (no
// worker runs it) and keeps no lock on the row, although the caller's
// transaction stays open: the worker that claimed it must update that row
// when the task ends.
func TestCancelTaskKeepsNoLockOnTaskClaimedMeanwhile(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "cancel_claimed")
	r := newClaimRace(t, su, role)

	call := startCall(func() (*bool, error) { return cancelTask(r.conn, r.id) })
	pid := r.conn.PgConn().PID()
	requirePoll(t, waitTimeout, "cancel_task to wait for the claim's row lock", whileConnected(su, func() (bool, string) {
		n, err := queryRows[string](su, "SELECT locktype FROM pg_locks WHERE pid = $1 AND NOT granted", pid)
		if done, _ := call.finished(); done {
			return true, fmt.Sprintf("cancel_task returned %v, %v without waiting", call.ok, call.err)
		}
		return err == nil && len(n) > 0, fmt.Sprintf("lock waits of %d: %v, err=%v", pid, n, err)
	}))
	r.claim.end(t, "COMMIT")
	requirePoll(t, waitTimeout, "cancel_task to return once the claim committed", call.finished)
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
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "cancel_all_claimed")
	r := newClaimRace(t, su, role)

	start := time.Now()
	call := startCall(func() (*bool, error) {
		_, err := r.conn.Exec(context.Background(), "SELECT lantern.cancel_all_async_tasks()")
		return nil, err
	})
	ok, _ := poll(t, 5*time.Second, call.finished, "cancel_all_async_tasks() returns while a claim holds the row")
	assert.True(t, ok, "cancel_all_async_tasks() still waits %v after it was called, behind a claim's row lock",
		time.Since(start).Round(time.Millisecond))
	t.Logf("cancel_all_async_tasks() took %v", time.Since(start).Round(time.Millisecond))
	r.claim.end(t, "COMMIT")
	requirePoll(t, waitTimeout, "cancel_all_async_tasks() to return", call.finished)
	require.NoError(t, call.err)

	r.requireUnlocked(t, su, "after cancel_all_async_tasks() returned")
	r.finish(t, su)
}

// TestSuperuserCancelAllNotBlockedByOpenCancel: a role's cancel_task() of
// its own pending task, in a transaction it keeps open, does not make a
// superuser's cancel_all_async_tasks() wait; the role's cancel holds once
// it commits.
func TestSuperuserCancelAllNotBlockedByOpenCancel(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "cancel_all_open")
	conn := connect(t, role)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	id := submit(t, conn, "SELECT 1")
	tx := beginHeld(t, conn)
	requireCancelTask(t, conn, id, true)

	admin := connect(t, superuser)
	mustExec(t, admin, "SET statement_timeout = '5s'")
	start := time.Now()
	_, err := admin.Exec(ctx(t), "SELECT lantern.cancel_all_async_tasks()")
	elapsed := time.Since(start)
	t.Logf("the superuser's cancel_all_async_tasks() took %v", elapsed.Round(time.Millisecond))
	tx.end(t, "COMMIT")
	lock.release(t)
	for _, b := range blockers {
		waitTask(t, su, b) // canceled by the superuser's cancel_all
	}
	require.NoError(t, err, "a superuser's cancel_all_async_tasks() waited %v behind a role's open cancel_task() (SQLSTATE %s)",
		elapsed.Round(time.Millisecond), pgCode(err))
	requireCanceled(t, conn, id, "57014")
}

// TestCancelInRepeatableReadOfFinishedTask: cancel_task() in a REPEATABLE
// READ transaction whose snapshot predates the task's end answers false
// (finished) instead of failing to serialize (40001), and leaves the
// transaction's snapshot as it was.
func TestCancelInRepeatableReadOfFinishedTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "cancel_rr")
	conn := connect(t, role)
	rr := connect(t, role)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	id := submit(t, conn, "SELECT 1")

	mustExec(t, rr, "BEGIN ISOLATION LEVEL REPEATABLE READ")
	require.Equal(t, "pending", queryOne[string](t, rr, "SELECT status FROM lantern.tasks WHERE jobid = $1", id))
	lock.release(t)
	requireSucceeded(t, su, blockers...)
	requireSucceeded(t, conn, id)

	ok, err := cancelTask(rr, id)
	require.NoError(t, err, "cancel_task(%d) of a finished task in a REPEATABLE READ transaction (SQLSTATE %s)", id, pgCode(err))
	require.NotNil(t, ok)
	require.False(t, *ok, "cancel_task(%d) of a task that succeeded", id)
	require.Equal(t, "pending", queryOne[string](t, rr, "SELECT status FROM lantern.tasks WHERE jobid = $1", id),
		"the REPEATABLE READ snapshot is unchanged")
	mustExec(t, rr, "COMMIT")
	require.Equal(t, "succeeded", deref(getTask(t, su, id).Status))
}
