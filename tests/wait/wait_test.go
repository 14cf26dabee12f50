package wait

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

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
	require.NoError(t, conn.QueryRow(testkit.Ctx(t), "CALL lantern.wait_task($1, $2::interval, NULL)", jobid, timeout).Scan(&status))
	return testkit.Deref(status)
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
	waiter := testkit.Connect(t, testkit.Superuser)
	done := make(chan waitResult, 1)
	go func() {
		var s *string
		err := waiter.QueryRow(context.Background(), "CALL lantern.wait_task($1, $2::interval, NULL)", jobid, timeout).Scan(&s)
		r := waitResult{status: testkit.Deref(s), at: time.Now()}
		if err != nil {
			r.status = "error: " + err.Error()
		}
		done <- r
	}()
	testkit.RequirePoll(t, testkit.WaitTimeout, "the waiter sleeps on its latch", testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int64](su, `SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE 'CALL lantern.wait_task%' AND wait_event = 'Extension'`)
		return err == nil && n[0] == 1, fmt.Sprintf("sleeping waiters %v, err %v", n, err)
	}))
	return done
}

// waitResultOf is what the waiter of startWaiter got (deadline testkit.WaitTimeout).
func waitResultOf(t *testing.T, done <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(testkit.WaitTimeout):
		t.Fatal("the waiter did not return")
		return waitResult{}
	}
}

func TestWaitTaskReturnsTheFinalStatus(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "waiter")
	conn := testkit.Connect(t, role)

	require.Equal(t, "succeeded", waitStatus(t, conn, testkit.Submit(t, conn, "SELECT 1"), "1 min"))
	require.Equal(t, "failed", waitStatus(t, conn, testkit.Submit(t, conn, "SELECT 1/0"), "1 min"))

	lock := testkit.HoldAdvisoryLock(t)
	held := testkit.Submit(t, conn, lock.WaitSQL())
	require.Equal(t, "running", waitStatus(t, conn, held, "300 ms"), "its current status when the timeout passes")
	testkit.RequireCancelTask(t, conn, held, true)
	require.Equal(t, "canceled", waitStatus(t, conn, held, "1 min"))
	lock.Release(t)
}

// A pending task's status, a zero timeout (one look), and no timeout at all.
func TestWaitTaskTimeouts(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	queued := testkit.Submit(t, su, "SELECT 1")
	require.Equal(t, "pending", waitStatus(t, su, queued, "0"))
	require.Equal(t, "pending", waitStatus(t, su, queued, "200 ms"))
	lock.Release(t)
	var status *string
	require.NoError(t, su.QueryRow(testkit.Ctx(t), "CALL lantern.wait_task($1, NULL, NULL)", queued).Scan(&status))
	require.Equal(t, "succeeded", testkit.Deref(status), "NULL timeout: until it finishes")
	testkit.RequireSucceeded(t, su, blockers...)

	_, err := su.Exec(testkit.Ctx(t), "CALL lantern.wait_task($1, '-1 s', NULL)", queued)
	testkit.RequirePgError(t, err, "22023", "a negative timeout")
}

// Any interval is a timeout: one too long for a timestamp is no limit, as
// 'infinity' is (17+); before, '100000000 years' overflowed and was
// refused as negative.
func TestWaitTaskTakesAnyTimeout(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	finished := testkit.Submit(t, su, "SELECT 1")
	testkit.RequireSucceeded(t, su, finished)
	long := []string{"100000000 years", "178000000 years"}
	negative := []string{"-100000000 years", "-178000000 years", "1 year -400 days"}
	if testkit.ServerVersionNum(t) >= 170000 {
		long, negative = append(long, "infinity"), append(negative, "-infinity")
	}
	for _, timeout := range long {
		require.Equal(t, "succeeded", waitStatus(t, su, finished, timeout), "timeout %s", timeout)
	}
	for _, timeout := range negative {
		_, err := su.Exec(testkit.Ctx(t), "CALL lantern.wait_task($1, $2::interval, NULL)", finished, timeout)
		pgErr := testkit.RequirePgError(t, err, "22023", "timeout %s", timeout)
		require.Equal(t, "timeout must not be negative", pgErr.Message)
	}

	lock := testkit.HoldAdvisoryLock(t)
	held := testkit.Submit(t, su, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{held})
	done := startWaiter(t, su, held, "100000000 years")
	lock.Release(t)
	require.Equal(t, "succeeded", waitResultOf(t, done).status, "a very long timeout waits until the task finishes")
}

// Woken at the commit, not by a periodic look: the waiter returns well
// within its 10 s recheck after the task finishes.
func TestWaitTaskIsWokenWhenTheTaskFinishes(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	lock := testkit.HoldAdvisoryLock(t)
	id := testkit.Submit(t, su, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{id})

	done := startWaiter(t, su, id, "1 min")
	released := time.Now()
	lock.Release(t)
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
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	owner, other := testkit.NewTempRole(t, su, "owner"), testkit.NewTempRole(t, su, "other")
	ownerConn, otherConn := testkit.Connect(t, owner), testkit.Connect(t, other)
	id := testkit.Submit(t, ownerConn, "SELECT 1")
	testkit.RequireSucceeded(t, ownerConn, id)

	require.Equal(t, "", waitStatus(t, otherConn, id, "1 s"), "another role's task")
	require.Equal(t, "", waitStatus(t, otherConn, id+1_000_000, "1 s"), "no such task")
	require.Equal(t, "succeeded", waitStatus(t, su, id, "1 s"), "a superuser sees every task")
}

// Inside a transaction block (or a function) it would have to keep a
// snapshot while it sleeps: refused, and says why.
func TestWaitTaskRefusedInATransactionBlock(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	id := testkit.Submit(t, su, "SELECT 1")
	tx, err := su.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	defer tx.Rollback(context.Background()) //nolint:errcheck // the transaction failed
	_, err = tx.Exec(testkit.Ctx(t), "CALL lantern.wait_task($1, '1 s', NULL)", id)
	pgErr := testkit.RequirePgError(t, err, "25001", "wait_task in BEGIN ... COMMIT")
	require.Equal(t, "lantern.wait_task() cannot run inside a transaction block", pgErr.Message)
	require.NotEmpty(t, pgErr.Hint)
}

// A CREATE INDEX CONCURRENTLY task waits for every transaction older than
// its snapshots; a waiter that kept a snapshot would stall it until the
// waiter gave up. Here the waiter is asleep before the build starts (every
// slot is held until then), and the build finishes while it waits.
func TestWaitTaskDoesNotStallCreateIndexConcurrently(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("cic_wait"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s AS SELECT g AS v FROM generate_series(1, 50000) g", tbl))
	t.Cleanup(func() { _ = testkit.Cluster.Exec(context.Background(), testkit.DBName, "DROP TABLE IF EXISTS "+tbl) })
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	id := testkit.Submit(t, su, fmt.Sprintf("CREATE INDEX CONCURRENTLY ON %s (v)", tbl))

	done := startWaiter(t, su, id, "30 s")
	start := time.Now()
	lock.Release(t)
	select {
	case r := <-done:
		t.Logf("the waiter got %q %v after the build could start", r.status, r.at.Sub(start).Round(time.Millisecond))
		require.Equal(t, "succeeded", r.status, "a stalled build would still be running when the waiter gives up")
	case <-time.After(time.Minute):
		t.Fatal("the waiter did not return")
	}
	testkit.RequireSucceeded(t, su, blockers...)
}

// Canceling the waiter stops the wait, not the task.
func TestCancelingTheWaiterLeavesTheTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	lock := testkit.HoldAdvisoryLock(t)
	id := testkit.Submit(t, su, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{id})

	waiter := testkit.Connect(t, testkit.Superuser)
	testkit.MustExec(t, waiter, "SET statement_timeout = '300ms'")
	_, err := waiter.Exec(testkit.Ctx(t), "CALL lantern.wait_task($1, '1 min', NULL)", id)
	testkit.RequirePgError(t, err, "57014", "the waiter's statement_timeout")
	require.Equal(t, "running", testkit.QueryOne[string](t, su, "SELECT status FROM lantern.tasks WHERE jobid = $1", id))

	lock.Release(t)
	testkit.RequireSucceeded(t, su, id)
	testkit.MustExec(t, waiter, "RESET statement_timeout")
	require.Equal(t, "succeeded", waitStatus(t, waiter, id, "1 s"), "the waiter's session is usable")
}
