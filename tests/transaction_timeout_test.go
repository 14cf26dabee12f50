package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// TestTransactionTimeoutIsTheTaskOutcome: PostgreSQL 17's transaction_timeout
// ends the session with a FATAL error (25P04). When a task sets it, or its
// role or database does, that error is the task's outcome, as psql would
// print it, not "the process running this task exited"; and the role's
// next task runs.
// On 15 the setting does not exist: the task fails with 42704.
func TestTransactionTimeoutIsTheTaskOutcome(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newLoginRole(t, su, "txn_timeout")
	conn := connect(t, role)
	if serverVersionNum(t) < 170000 {
		id := submit(t, conn, "SET transaction_timeout = '1s'; SELECT pg_sleep(30)")
		msg := requireFailedWithSQLState(t, conn, id, "42704")
		require.Contains(t, msg, `unrecognized configuration parameter "transaction_timeout"`)
		return
	}

	own := submit(t, conn, "SET transaction_timeout = '200ms'; SELECT pg_sleep(30)")
	local := submit(t, conn, "BEGIN; SET LOCAL transaction_timeout = '200ms'; SELECT pg_sleep(30); COMMIT")
	for _, id := range []int64{own, local} {
		requireTransactionTimeout(t, conn, id)
	}
	requireSucceeded(t, conn, submit(t, conn, "SELECT 1"))

	// The role's own setting, set before its first task: its workers log in with it.
	limited := newLoginRole(t, su, "txn_timeout_role")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET transaction_timeout = '200ms'", limited))
	lconn := connect(t, limited)
	requireTransactionTimeout(t, lconn, submit(t, lconn, "SELECT pg_sleep(30)"))
	requireSucceeded(t, lconn, submit(t, lconn, "SELECT 1"))
}

func requireTransactionTimeout(t *testing.T, conn *pgx.Conn, id int64) {
	t.Helper()
	msg := requireFailedWithSQLState(t, conn, id, "25P04")
	require.Equal(t, "FATAL:  terminating connection due to transaction timeout", msg, "task %d", id)
	requireStoppedWithin(t, id, 10*time.Second)
}

// TestTransactionTimeoutSparesTheBookkeeping: a role that sets itself a
// transaction_timeout too short for anything limits its own tasks, not the
// transactions in which its worker claims them and records their outcomes.
// Before, the limit ended every claim (FATAL inside the claim's UPDATE), so
// the role's tasks stayed pending for good while the launcher backed off.
func TestTransactionTimeoutSparesTheBookkeeping(t *testing.T) {
	begin(t)
	if serverVersionNum(t) < 170000 {
		t.Skip("transaction_timeout is new in PostgreSQL 17")
	}
	su := connect(t, superuser)
	role := newLoginRole(t, su, "txn_timeout_tiny")
	conn := connect(t, role)
	mustExec(t, conn, fmt.Sprintf("ALTER ROLE %s SET transaction_timeout = '1ms'", role)) // as itself

	long := submit(t, conn, "SELECT pg_sleep(1)")
	var short []int64
	for range 3 {
		short = append(short, submit(t, conn, "SELECT 1"))
	}
	requireTransactionTimeout(t, conn, long)
	for _, id := range short {
		// Even "SELECT 1" and its outcome may take more than 1 ms: then
		// the limit ends it, which is still an outcome.
		if status, msg := waitTask(t, conn, id); status != "succeeded" {
			require.Equal(t, "FATAL:  terminating connection due to transaction timeout", msg, "task %d", id)
			require.Equal(t, "25P04", taskSQLState(t, id), "task %d", id)
		}
	}
}
