package tests

import "testing"

// A cancel_task() that fails leaves its session as any failed statement
// does: idle, usable, with nothing of the failed call left behind. Its
// pending-task path runs in an internal subtransaction; an error inside it
// (here a statement timeout while another open transaction holds the row)
// once left the session in a failed transaction block, and a ROLLBACK then
// ended it with FATAL "UserAbortTransactionBlock: unexpected state STARTED".
func TestFailedCancelLeavesSessionUsable(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "cancel_session")
	lock := holdAdvisoryLock(t)
	lock.blockWorkers(t, su, cluster.MaxWorkers()) // so that the task stays pending

	owner := connect(t, role)
	id := submit(t, owner, "SELECT 1")
	holder := connect(t, role)
	held := beginHeld(t, holder)
	requireCancelTask(t, holder, id, true) // the row is locked until held ends

	mustExec(t, owner, "SET statement_timeout = '200ms'")
	_, err := cancelTask(owner, id)
	requirePgError(t, err, "57014", "cancel_task waiting on the row another transaction holds")
	requireSessionUsable(t, owner, "after a cancel_task that timed out")
	mustExec(t, owner, "ROLLBACK") // a WARNING (no transaction in progress), never FATAL
	requireSessionUsable(t, owner, "after ROLLBACK")

	held.end(t, "ROLLBACK")
	mustExec(t, owner, "RESET statement_timeout")
	requireCancelTask(t, owner, id, true)
	requireCanceled(t, owner, id, "57014")
}
