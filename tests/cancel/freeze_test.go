package cancel

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// A role that keeps the transaction of its own
// lantern.cancel_task() call open must neither block the launcher or
// other roles' tasks, nor make the extension start worker processes in a
// loop.

const (
	// forkWindow is how long the fork-loop test watches worker starts.
	forkWindow = 5 * time.Second
	// maxStartsInWindow is the most worker processes the extension may
	// start in forkWindow for a role whose only task is being canceled.
	maxStartsInWindow = 10
)

// openPendingCancel makes a pending task of a fresh role and calls
// lantern.cancel_task() on it in a transaction that stays open. Every
// worker slot is filled first (superuser tasks waiting on an advisory lock)
// so that the task is pending; the slots are freed again before it returns.
func openPendingCancel(t *testing.T, su *pgx.Conn, base string) (role, marker string, id int64, tx *testkit.HeldTx) {
	t.Helper()
	role = testkit.NewTempRole(t, su, base)
	marker = testkit.MarkerTable(t, su, base, role)
	conn := testkit.Connect(t, role)

	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	id = testkit.Submit(t, conn, testkit.MarkerInsert(marker, 1))
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, id).Status), "every worker is busy: the task must be pending")

	tx = testkit.BeginHeld(t, conn)
	testkit.RequireCancelTask(t, conn, id, true)
	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	return role, marker, id, tx
}

// afterOpenCancel ends the open cancel with COMMIT and checks the outcome:
// the task is canceled and never ran, and the role's next task runs.
func afterOpenCancel(t *testing.T, role, marker string, id int64, tx *testkit.HeldTx) {
	t.Helper()
	tx.End(t, "COMMIT")
	testkit.RequireCanceledRow(t, testkit.GetTask(t, nil, id), "57014")
	conn := testkit.Connect(t, role)
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, testkit.MarkerInsert(marker, 2)))
	require.Equal(t, []int{2}, testkit.MarkerValues(t, marker), "the canceled task must never run")
}

// TestOpenCancelOfRunningDoesNotFreezeOthers: a role cancels its running
// task in a transaction it keeps open, and the worker is terminated (so
// that the task must be settled by the launcher). Another role's new task
// still runs within the usual deadline; once the transaction ends the
// canceled task is final.
func TestOpenCancelOfRunningDoesNotFreezeOthers(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "freeze_run")
	conn := testkit.Connect(t, role)
	bob := testkit.Connect(t, "bob")
	marker := testkit.MarkerTable(t, su, "freeze_run", "bob")

	rt := testkit.StartTask(t, su, conn, testkit.SleepQuery(60, "freeze_run"))
	tx := testkit.BeginHeld(t, conn)
	testkit.RequireCancelTask(t, conn, rt.ID, true)
	// The worker may have recorded the cancel and exited already (false).
	t.Logf("pg_terminate_backend(%d): %v", rt.Pid, testkit.QueryOne[bool](t, su, "SELECT pg_terminate_backend($1)", rt.Pid))
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("worker %d to exit", rt.Pid), testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE pid = $1", rt.Pid)
		return err == nil && len(n) == 0, fmt.Sprintf("pids %v, err %v", n, err)
	}))

	// The cancel's transaction is still open.
	other := testkit.Submit(t, bob, testkit.MarkerInsert(marker, 1))
	testkit.RequireSucceeded(t, bob, other)
	require.Equal(t, []int{1}, testkit.MarkerValues(t, marker))

	tx.End(t, "COMMIT")
	status, msg := testkit.WaitTask(t, su, rt.ID)
	t.Logf("the canceled task whose worker was terminated ended %s: %s", status, msg)
	require.Contains(t, []string{"canceled", "failed"}, status,
		"task %d was canceled, then its worker terminated (error_message %q)", rt.ID, msg)
}

// TestOpenCancelOfPendingDoesNotFreezeOthers: while a role keeps the
// transaction of cancel_task(<its pending task>) open, other roles' tasks
// run as usual.
func TestOpenCancelOfPendingDoesNotFreezeOthers(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role, marker, id, tx := openPendingCancel(t, su, "freeze_pend")
	others := testkit.MarkerTable(t, su, "freeze_pend_others", "bob", "carol")

	bob, carol := testkit.Connect(t, "bob"), testkit.Connect(t, "carol")
	var ids []int64
	for i := range 3 {
		ids = append(ids, testkit.Submit(t, bob, testkit.MarkerInsert(others, 2*i)), testkit.Submit(t, carol, testkit.MarkerInsert(others, 2*i+1)))
	}
	testkit.RequireSucceeded(t, su, ids...)
	require.Equal(t, []int{0, 1, 2, 3, 4, 5}, testkit.MarkerValues(t, others))

	afterOpenCancel(t, role, marker, id, tx)
}

// TestOpenCancelOfPendingDoesNotForkLoop: while a role keeps the
// transaction of cancel_task(<its only pending task>) open, the extension
// starts at most a few worker processes (counted from the postmaster's
// DEBUG1 "starting background worker process" lines), not one after the
// other in a loop. Once the transaction commits, the role's tasks run
// normally.
func TestOpenCancelOfPendingDoesNotForkLoop(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.DebugServerLog(t, su)
	role, marker, id, tx := openPendingCancel(t, su, "forkloop")

	from := len(testkit.Cluster.Log())
	started := time.Now()
	testkit.Never(t, forkWindow, func() (bool, string) {
		n := testkit.WorkerStartsSince(from)
		return n > maxStartsInWindow, fmt.Sprintf("%d worker processes started in %v", n, time.Since(started).Round(time.Millisecond))
	}, fmt.Sprintf("at most %d worker starts in %v while the cancel of a pending task is uncommitted", maxStartsInWindow, forkWindow))
	t.Logf("%d worker processes started in %v", testkit.WorkerStartsSince(from), time.Since(started).Round(time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}

	afterOpenCancel(t, role, marker, id, tx)
}
