package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Issue 6, items 4 and 5: a role that keeps the transaction of its own
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
func openPendingCancel(t *testing.T, su *pgx.Conn, base string) (role, marker string, id int64, tx *heldTx) {
	t.Helper()
	role = newTempRole(t, su, base)
	marker = markerTable(t, su, base, role)
	conn := connect(t, role)

	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	id = submit(t, conn, markerInsert(marker, 1))
	require.Equal(t, "pending", deref(getTask(t, su, id).Status), "every worker is busy: the task must be pending")

	tx = beginHeld(t, conn)
	requireCancelTask(t, conn, id, true)
	lock.release(t)
	requireSucceeded(t, su, blockers...)
	return role, marker, id, tx
}

// afterOpenCancel ends the open cancel with COMMIT and checks the outcome:
// the task is canceled and never ran, and the role's next task runs.
func afterOpenCancel(t *testing.T, role, marker string, id int64, tx *heldTx) {
	t.Helper()
	tx.end(t, "COMMIT")
	requireCanceledRow(t, getTask(t, nil, id), "57014")
	conn := connect(t, role)
	requireSucceeded(t, conn, submit(t, conn, markerInsert(marker, 2)))
	require.Equal(t, []int{2}, markerValues(t, marker), "the canceled task must never run")
}

// TestOpenCancelOfRunningDoesNotFreezeOthers: a role cancels its running
// task in a transaction it keeps open, and the worker is terminated (so
// that the task must be settled by the launcher). Another role's new task
// still runs within the usual deadline; once the transaction ends the
// canceled task is final.
func TestOpenCancelOfRunningDoesNotFreezeOthers(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "freeze_run")
	conn := connect(t, role)
	bob := connect(t, "bob")
	marker := markerTable(t, su, "freeze_run", "bob")

	rt := startTask(t, su, conn, sleepQuery(60, "freeze_run"))
	tx := beginHeld(t, conn)
	requireCancelTask(t, conn, rt.id, true)
	// The worker may have recorded the cancel and exited already (false).
	t.Logf("pg_terminate_backend(%d): %v", rt.pid, queryOne[bool](t, su, "SELECT pg_terminate_backend($1)", rt.pid))
	requirePoll(t, waitTimeout, fmt.Sprintf("worker %d to exit", rt.pid), whileConnected(su, func() (bool, string) {
		n, err := queryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE pid = $1", rt.pid)
		return err == nil && len(n) == 0, fmt.Sprintf("pids %v, err %v", n, err)
	}))

	// The cancel's transaction is still open.
	other := submit(t, bob, markerInsert(marker, 1))
	requireSucceeded(t, bob, other)
	require.Equal(t, []int{1}, markerValues(t, marker))

	tx.end(t, "COMMIT")
	status, msg := waitTask(t, su, rt.id)
	t.Logf("the canceled task whose worker was terminated ended %s: %s", status, msg)
	require.Contains(t, []string{"canceled", "failed"}, status,
		"task %d was canceled, then its worker terminated (error_message %q)", rt.id, msg)
}

// TestOpenCancelOfPendingDoesNotFreezeOthers: while a role keeps the
// transaction of cancel_task(<its pending task>) open, other roles' tasks
// run as usual.
func TestOpenCancelOfPendingDoesNotFreezeOthers(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role, marker, id, tx := openPendingCancel(t, su, "freeze_pend")
	others := markerTable(t, su, "freeze_pend_others", "bob", "carol")

	bob, carol := connect(t, "bob"), connect(t, "carol")
	var ids []int64
	for i := range 3 {
		ids = append(ids, submit(t, bob, markerInsert(others, 2*i)), submit(t, carol, markerInsert(others, 2*i+1)))
	}
	requireSucceeded(t, su, ids...)
	require.Equal(t, []int{0, 1, 2, 3, 4, 5}, markerValues(t, others))

	afterOpenCancel(t, role, marker, id, tx)
}

// TestOpenCancelOfPendingDoesNotForkLoop: while a role keeps the
// transaction of cancel_task(<its only pending task>) open, the extension
// starts at most a few worker processes (counted from the postmaster's
// DEBUG1 "starting background worker process" lines), not one after the
// other in a loop. Once the transaction commits, the role's tasks run
// normally.
func TestOpenCancelOfPendingDoesNotForkLoop(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	debugServerLog(t, su)
	role, marker, id, tx := openPendingCancel(t, su, "forkloop")

	from := len(cluster.Log())
	started := time.Now()
	never(t, forkWindow, func() (bool, string) {
		n := workerStartsSince(from)
		return n > maxStartsInWindow, fmt.Sprintf("%d worker processes started in %v", n, time.Since(started).Round(time.Millisecond))
	}, fmt.Sprintf("at most %d worker starts in %v while the cancel of a pending task is uncommitted", maxStartsInWindow, forkWindow))
	t.Logf("%d worker processes started in %v", workerStartsSince(from), time.Since(started).Round(time.Millisecond))
	if t.Failed() {
		t.FailNow()
	}

	afterOpenCancel(t, role, marker, id, tx)
}
