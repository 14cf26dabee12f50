package timeouts

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// TestTransactionTimeoutIsTheTaskOutcome: PostgreSQL 17's transaction_timeout
// ends the session with a FATAL error (25P04). When a task sets it, or its
// role or database does, that error is the task's outcome, as psql would
// print it, not "the process running this task exited"; and the role's
// next task runs.
// On 15 the setting does not exist: the task fails with 42704.
func TestTransactionTimeoutIsTheTaskOutcome(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewLoginRole(t, su, "txn_timeout")
	conn := testkit.Connect(t, role)
	if testkit.ServerVersionNum(t) < 170000 {
		id := testkit.Submit(t, conn, "SET transaction_timeout = '1s'; SELECT pg_sleep(30)")
		msg := testkit.RequireFailedWithSQLState(t, conn, id, "42704")
		require.Contains(t, msg, `unrecognized configuration parameter "transaction_timeout"`)
		return
	}

	own := testkit.Submit(t, conn, "SET transaction_timeout = '200ms'; SELECT pg_sleep(30)")
	local := testkit.Submit(t, conn, "BEGIN; SET LOCAL transaction_timeout = '200ms'; SELECT pg_sleep(30); COMMIT")
	for _, id := range []int64{own, local} {
		testkit.RequireTransactionTimeout(t, conn, id)
	}
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))

	// The role's own setting, set before its first task: its workers log in with it.
	limited := testkit.NewLoginRole(t, su, "txn_timeout_role")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET transaction_timeout = '200ms'", limited))
	lconn := testkit.Connect(t, limited)
	testkit.RequireTransactionTimeout(t, lconn, testkit.Submit(t, lconn, "SELECT pg_sleep(30)"))
	testkit.RequireSucceeded(t, lconn, testkit.Submit(t, lconn, "SELECT 1"))
}

// TestTransactionTimeoutSparesTheBookkeeping: a role that sets itself a
// transaction_timeout too short for anything limits its own tasks, not the
// transactions in which its worker claims them and records their outcomes.
// Before, the limit ended every claim (FATAL inside the claim's UPDATE), so
// the role's tasks stayed pending for good while the launcher backed off.
func TestTransactionTimeoutSparesTheBookkeeping(t *testing.T) {
	testkit.Begin(t)
	if testkit.ServerVersionNum(t) < 170000 {
		t.Skip("transaction_timeout is new in PostgreSQL 17")
	}
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewLoginRole(t, su, "txn_timeout_tiny")
	conn := testkit.Connect(t, role)
	testkit.MustExec(t, conn, fmt.Sprintf("ALTER ROLE %s SET transaction_timeout = '1ms'", role)) // as itself

	long := testkit.Submit(t, conn, "SELECT pg_sleep(1)")
	var short []int64
	for range 3 {
		short = append(short, testkit.Submit(t, conn, "SELECT 1"))
	}
	testkit.RequireTransactionTimeout(t, conn, long)
	for _, id := range short {
		// Even "SELECT 1" and its outcome may take more than 1 ms: then
		// the limit ends it, which is still an outcome.
		if status, msg := testkit.WaitTask(t, conn, id); status != "succeeded" {
			require.Equal(t, "FATAL:  terminating connection due to transaction timeout", msg, "task %d", id)
			require.Equal(t, "25P04", testkit.TaskSQLState(t, id), "task %d", id)
		}
	}
}
