package timeouts

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// statement_timeout and lock_timeout apply in a task the
// way they do in psql -c.

const (
	msgStatementTimeout = "ERROR:  canceling statement due to statement timeout"
	msgLockTimeout      = "ERROR:  canceling statement due to lock timeout"
)

// requireQuickFailure asserts the failed task did not run its 2 s sleep.
func requireQuickFailure(t *testing.T, jobid int64) {
	t.Helper()
	r := testkit.GetTask(t, nil, jobid)
	require.NotNil(t, r.Duration, "duration of task %d", jobid)
	require.Less(t, *r.Duration, 1.9, "task %d must be stopped by the timeout, not run its pg_sleep(2)", jobid)
}

// TestStatementTimeoutInTask: a task that sets statement_timeout itself is
// stopped by it (57014, "canceling statement due to statement timeout"),
// and the next task of the same worker does not inherit the setting.
func TestStatementTimeoutInTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "stmt_timeout")
	conn := testkit.Connect(t, role)

	id := testkit.Submit(t, conn, "SET statement_timeout = '200ms'; SELECT pg_sleep(2)")
	testkit.RequireFailedLike(t, conn, id, "57014", msgStatementTimeout)
	requireQuickFailure(t, id)
	require.NotEqual(t, testkit.CanceledMessage, testkit.Deref(testkit.GetTask(t, su, id).ErrorMessage), "a timeout is not a cancel_task()")

	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
}

// TestStatementTimeoutNotCarriedToNextTask: a task that set
// statement_timeout and succeeded does not shorten the next task run by the
// same worker process. All slots but one are busy and both tasks are
// committed together, so one worker runs both (checked with pg_backend_pid).
func TestStatementTimeoutNotCarriedToNextTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "stmt_timeout_next")
	conn := testkit.Connect(t, role)
	marker := testkit.MarkerTable(t, su, "stmt_timeout_next", role)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)

	tx := testkit.BeginHeld(t, conn)
	first := testkit.Submit(t, conn, fmt.Sprintf("SET statement_timeout = '200ms'; INSERT INTO %s SELECT pg_backend_pid()", marker))
	second := testkit.Submit(t, conn, fmt.Sprintf("SELECT pg_sleep(0.5); INSERT INTO %s SELECT pg_backend_pid()", marker))
	tx.End(t, "COMMIT")
	testkit.RequireSucceeded(t, conn, first, second)

	pids := testkit.MarkerValues(t, marker)
	require.Len(t, pids, 2)
	require.Equal(t, pids[0], pids[1], "both tasks ran in the same worker process")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}

// TestRoleStatementTimeout: ALTER ROLE ... SET statement_timeout applies to
// the role's tasks, as to its psql sessions; a fast task still succeeds.
func TestRoleStatementTimeout(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "role_timeout")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET statement_timeout = '200ms'", role))
	t.Cleanup(func() { testkit.CleanupExec(t, fmt.Sprintf("ALTER ROLE %s RESET statement_timeout", role)) })
	conn := testkit.Connect(t, role)

	id := testkit.Submit(t, conn, "SELECT pg_sleep(2)")
	testkit.RequireFailedLike(t, conn, id, "57014", msgStatementTimeout)
	requireQuickFailure(t, id)

	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
}

// TestLockTimeoutInTask: a task that sets lock_timeout and then waits for a
// lock a client session holds fails with 55P03 ("canceling statement due
// to lock timeout") instead of waiting for as long as the lock is held.
func TestLockTimeoutInTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "lock_timeout")
	conn := testkit.Connect(t, role)
	tbl := testkit.Ident(t, testkit.Uniq("lock_timeout_t"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	t.Cleanup(func() { testkit.CleanupExec(t, "DROP TABLE IF EXISTS "+tbl) })
	testkit.MustExec(t, su, fmt.Sprintf("GRANT SELECT, UPDATE ON %s TO %s", tbl, role))

	holder := testkit.Connect(t, testkit.Superuser)
	tx := testkit.BeginHeld(t, holder)
	testkit.MustExec(t, holder, fmt.Sprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", tbl))

	id := testkit.Submit(t, conn, fmt.Sprintf("SET lock_timeout = '200ms'; LOCK TABLE %s", tbl))
	testkit.RequireFailedLike(t, conn, id, "55P03", msgLockTimeout)
	tx.End(t, "ROLLBACK")

	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, fmt.Sprintf("SELECT pg_sleep(0.3); LOCK TABLE %s", tbl)))
}
