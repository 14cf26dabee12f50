package cancel

import (
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

// A cancel_task() that fails leaves its session as any failed statement
// does: idle, usable, with nothing of the failed call left behind. Its
// pending-task path runs in an internal subtransaction; an error inside it
// (here a statement timeout while another open transaction holds the row)
// once left the session in a failed transaction block, and a ROLLBACK then
// ended it with FATAL "UserAbortTransactionBlock: unexpected state STARTED".
func TestFailedCancelLeavesSessionUsable(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_session")
	lock := testkit.HoldAdvisoryLock(t)
	lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()) // so that the task stays pending

	owner := testkit.Connect(t, role)
	id := testkit.Submit(t, owner, "SELECT 1")
	holder := testkit.Connect(t, role)
	held := testkit.BeginHeld(t, holder)
	testkit.RequireCancelTask(t, holder, id, true) // the row is locked until held ends

	testkit.MustExec(t, owner, "SET statement_timeout = '200ms'")
	_, err := testkit.CancelTask(owner, id)
	testkit.RequirePgError(t, err, "57014", "cancel_task waiting on the row another transaction holds")
	testkit.RequireSessionUsable(t, owner, "after a cancel_task that timed out")
	testkit.MustExec(t, owner, "ROLLBACK") // a WARNING (no transaction in progress), never FATAL
	testkit.RequireSessionUsable(t, owner, "after ROLLBACK")

	held.End(t, "ROLLBACK")
	testkit.MustExec(t, owner, "RESET statement_timeout")
	testkit.RequireCancelTask(t, owner, id, true)
	testkit.RequireCanceled(t, owner, id, "57014")
}
