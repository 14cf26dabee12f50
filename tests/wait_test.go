package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// lantern.wait_task(jobid, timeout) (README "Wait"): a procedure that
// returns the task's final status, its current one at the timeout, or NULL
// for a task the caller cannot see; it sleeps on its latch, woken at the
// commit of the task's outcome, and holds no snapshot while it sleeps.

// waitStatus CALLs wait_task; a NULL status is "".
func waitStatus(t *testing.T, conn *pgx.Conn, jobid int64, timeout string) string {
	t.Helper()
	var status *string
	require.NoError(t, conn.QueryRow(ctx(t), "CALL lantern.wait_task($1, $2::interval, NULL)", jobid, timeout).Scan(&status))
	return deref(status)
}

// waitResult is what a waiter started by startWaiter got, and when.
type waitResult struct {
	status string // "error: ..." when the CALL failed
	at     time.Time
}

// startWaiter CALLs wait_task on a connection of its own in the
// background and returns once that waiter sleeps on its latch.
func startWaiter(t *testing.T, su *pgx.Conn, jobid int64, timeout string) <-chan waitResult {
	t.Helper()
	waiter := connect(t, superuser)
	done := make(chan waitResult, 1)
	go func() {
		var s *string
		err := waiter.QueryRow(context.Background(), "CALL lantern.wait_task($1, $2::interval, NULL)", jobid, timeout).Scan(&s)
		r := waitResult{status: deref(s), at: time.Now()}
		if err != nil {
			r.status = "error: " + err.Error()
		}
		done <- r
	}()
	requirePoll(t, waitTimeout, "the waiter sleeps on its latch", whileConnected(su, func() (bool, string) {
		n, err := queryRows[int64](su, `SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE 'CALL lantern.wait_task%' AND wait_event = 'Extension'`)
		return err == nil && n[0] == 1, fmt.Sprintf("sleeping waiters %v, err %v", n, err)
	}))
	return done
}

// waitResultOf is what the waiter of startWaiter got (deadline waitTimeout).
func waitResultOf(t *testing.T, done <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("the waiter did not return")
		return waitResult{}
	}
}

func TestWaitTaskReturnsTheFinalStatus(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "waiter")
	conn := connect(t, role)

	require.Equal(t, "succeeded", waitStatus(t, conn, submit(t, conn, "SELECT 1"), "1 min"))
	require.Equal(t, "failed", waitStatus(t, conn, submit(t, conn, "SELECT 1/0"), "1 min"))

	lock := holdAdvisoryLock(t)
	held := submit(t, conn, lock.waitSQL())
	require.Equal(t, "running", waitStatus(t, conn, held, "300 ms"), "its current status when the timeout passes")
	requireCancelTask(t, conn, held, true)
	require.Equal(t, "canceled", waitStatus(t, conn, held, "1 min"))
	lock.release(t)
}

// A pending task's status, a zero timeout (one look), and no timeout at all.
func TestWaitTaskTimeouts(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	queued := submit(t, su, "SELECT 1")
	require.Equal(t, "pending", waitStatus(t, su, queued, "0"))
	require.Equal(t, "pending", waitStatus(t, su, queued, "200 ms"))
	lock.release(t)
	var status *string
	require.NoError(t, su.QueryRow(ctx(t), "CALL lantern.wait_task($1, NULL, NULL)", queued).Scan(&status))
	require.Equal(t, "succeeded", deref(status), "NULL timeout: until it finishes")
	requireSucceeded(t, su, blockers...)

	_, err := su.Exec(ctx(t), "CALL lantern.wait_task($1, '-1 s', NULL)", queued)
	requirePgError(t, err, "22023", "a negative timeout")
}

// Any interval is a timeout: one too long for a timestamp is no limit, as
// 'infinity' is (17+); before, '100000000 years' overflowed and was
// refused as negative.
func TestWaitTaskTakesAnyTimeout(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	finished := submit(t, su, "SELECT 1")
	requireSucceeded(t, su, finished)
	long := []string{"100000000 years", "178000000 years"}
	negative := []string{"-100000000 years", "-178000000 years", "1 year -400 days"}
	if serverVersionNum(t) >= 170000 {
		long, negative = append(long, "infinity"), append(negative, "-infinity")
	}
	for _, timeout := range long {
		require.Equal(t, "succeeded", waitStatus(t, su, finished, timeout), "timeout %s", timeout)
	}
	for _, timeout := range negative {
		_, err := su.Exec(ctx(t), "CALL lantern.wait_task($1, $2::interval, NULL)", finished, timeout)
		pgErr := requirePgError(t, err, "22023", "timeout %s", timeout)
		require.Equal(t, "timeout must not be negative", pgErr.Message)
	}

	lock := holdAdvisoryLock(t)
	held := submit(t, su, lock.waitSQL())
	lock.waitBlocked(t, su, []int64{held})
	done := startWaiter(t, su, held, "100000000 years")
	lock.release(t)
	require.Equal(t, "succeeded", waitResultOf(t, done).status, "a very long timeout waits until the task finishes")
}

// Woken at the commit, not by a periodic look: the waiter returns well
// within its 10 s recheck after the task finishes.
func TestWaitTaskIsWokenWhenTheTaskFinishes(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	lock := holdAdvisoryLock(t)
	id := submit(t, su, lock.waitSQL())
	lock.waitBlocked(t, su, []int64{id})

	done := startWaiter(t, su, id, "1 min")
	released := time.Now()
	lock.release(t)
	select {
	case r := <-done:
		t.Logf("the waiter got %q %v after the task was let go", r.status, r.at.Sub(released).Round(time.Millisecond))
		require.Equal(t, "succeeded", r.status)
		require.Less(t, r.at.Sub(released), 3*time.Second, "woken at the outcome's commit, not at the 10 s recheck")
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter did not return")
	}
	require.Equal(t, "succeeded", waitStatus(t, su, id, "0"))
}

// NULL for a task the caller cannot see: another role's, or none at all.
func TestWaitTaskNullForTasksTheCallerCannotSee(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	owner, other := newTempRole(t, su, "owner"), newTempRole(t, su, "other")
	ownerConn, otherConn := connect(t, owner), connect(t, other)
	id := submit(t, ownerConn, "SELECT 1")
	requireSucceeded(t, ownerConn, id)

	require.Equal(t, "", waitStatus(t, otherConn, id, "1 s"), "another role's task")
	require.Equal(t, "", waitStatus(t, otherConn, id+1_000_000, "1 s"), "no such task")
	require.Equal(t, "succeeded", waitStatus(t, su, id, "1 s"), "a superuser sees every task")
}

// Inside a transaction block (or a function) it would have to keep a
// snapshot while it sleeps: refused, and says why.
func TestWaitTaskRefusedInATransactionBlock(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	id := submit(t, su, "SELECT 1")
	tx, err := su.Begin(ctx(t))
	require.NoError(t, err)
	defer tx.Rollback(context.Background()) //nolint:errcheck // the transaction failed
	_, err = tx.Exec(ctx(t), "CALL lantern.wait_task($1, '1 s', NULL)", id)
	pgErr := requirePgError(t, err, "25001", "wait_task in BEGIN ... COMMIT")
	require.Equal(t, "lantern.wait_task() cannot run inside a transaction block", pgErr.Message)
	require.NotEmpty(t, pgErr.Hint)
}

// A CREATE INDEX CONCURRENTLY task waits for every transaction older than
// its snapshots; a waiter that kept a snapshot would stall it until the
// waiter gave up. Here the waiter is asleep before the build starts (every
// slot is held until then), and the build finishes while it waits.
func TestWaitTaskDoesNotStallCreateIndexConcurrently(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("cic_wait"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s AS SELECT g AS v FROM generate_series(1, 50000) g", tbl))
	t.Cleanup(func() { _ = cluster.Exec(context.Background(), dbName, "DROP TABLE IF EXISTS "+tbl) })
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	id := submit(t, su, fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (v)", tbl))

	done := startWaiter(t, su, id, "30 s")
	start := time.Now()
	lock.release(t)
	select {
	case r := <-done:
		t.Logf("the waiter got %q %v after the build could start", r.status, r.at.Sub(start).Round(time.Millisecond))
		require.Equal(t, "succeeded", r.status, "a stalled build would still be running when the waiter gives up")
	case <-time.After(time.Minute):
		t.Fatal("the waiter did not return")
	}
	requireSucceeded(t, su, blockers...)
}

// Canceling the waiter stops the wait, not the task.
func TestCancelingTheWaiterLeavesTheTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	lock := holdAdvisoryLock(t)
	id := submit(t, su, lock.waitSQL())
	lock.waitBlocked(t, su, []int64{id})

	waiter := connect(t, superuser)
	mustExec(t, waiter, "SET statement_timeout = '300ms'")
	_, err := waiter.Exec(ctx(t), "CALL lantern.wait_task($1, '1 min', NULL)", id)
	requirePgError(t, err, "57014", "the waiter's statement_timeout")
	require.Equal(t, "running", queryOne[string](t, su, "SELECT status FROM lantern.tasks WHERE jobid = $1", id))

	lock.release(t)
	requireSucceeded(t, su, id)
	mustExec(t, waiter, "RESET statement_timeout")
	require.Equal(t, "succeeded", waitStatus(t, waiter, id, "1 s"), "the waiter's session is usable")
}
