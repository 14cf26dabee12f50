package scheduling

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Idle workers (README "What is trusted, and why"): a worker waits up to
// 1 s for its role's next task before it exits. While it waits it must
// not get in the way of an administrator, nor run tasks of a role that
// is gone.

// idleWorkerOf runs one task of role and checks its worker is then idle
// (the task succeeded and the process is still there).
func idleWorkerOf(t *testing.T, su, conn *pgx.Conn, role string) {
	t.Helper()
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
	n := testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = $1 AND usename = $2",
		testkit.BackendWorker, role)
	require.Equal(t, 1, n, "an idle worker of %s", role)
}

// quick runs sql as su and requires it to take well under the time an
// idle worker waits (the tests set testkit.SlowIdleTimeout, 10 s: a command that
// waited for the idle worker to leave would take that long, and DROP
// DATABASE would fail after PostgreSQL's 5 s).
func quick(t *testing.T, su *pgx.Conn, sql string) {
	t.Helper()
	start := time.Now()
	testkit.MustExec(t, su, sql)
	took := time.Since(start)
	t.Logf("%s with an idle worker: %v", sql, took.Round(time.Millisecond))
	require.Less(t, took, testkit.HandoffBound, "%s must not wait for an idle worker", sql)
}

// TestIdleWorkerBlocksNoAdminCommand: ALTER ROLE … NOLOGIN and DROP
// DATABASE run while a worker waits idle complete at once.
func TestIdleWorkerBlocksNoAdminCommand(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, testkit.SlowIdleTimeout)
	role := testkit.NewTempRole(t, su, "idleadmin")
	t.Cleanup(func() { testkit.CleanupExec(t, "ALTER ROLE "+role+" LOGIN") })
	conn := testkit.Connect(t, role)
	other := testkit.Ident(t, testkit.Uniq("idledb"))
	t.Cleanup(func() { testkit.CleanupExec(t, "DROP DATABASE IF EXISTS "+other) })
	testkit.MustExec(t, su, "CREATE DATABASE "+other)

	idleWorkerOf(t, su, conn, role)
	quick(t, su, "ALTER ROLE "+role+" NOLOGIN")
	testkit.MustExec(t, su, "ALTER ROLE "+role+" LOGIN")
	idleWorkerOf(t, su, conn, role)
	quick(t, su, "DROP DATABASE "+other)
}

// TestIdleWorkerAndDropExtension: DROP EXTENSION with an idle worker is
// immediate, and after CREATE EXTENSION the role's tasks run again.
func TestIdleWorkerAndDropExtension(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, testkit.SlowIdleTimeout)
	role := testkit.NewTempRole(t, su, "idleext")
	testkit.ResetExtensionAtEnd(t)
	conn := testkit.Connect(t, role)
	idleWorkerOf(t, su, conn, role)
	quick(t, su, "DROP EXTENSION lantern_async")
	testkit.MustExec(t, su, "CREATE EXTENSION lantern_async")
	require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), su))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
}

// TestRoleGoneWhileIdle: tasks queued for a role in the transaction that
// drops it (or, on 15, takes LOGIN away), while its worker waits idle, end
// failed and never run. On 17+ a NOLOGIN role's tasks run.
func TestRoleGoneWhileIdle(t *testing.T) {
	testkit.Begin(t)
	for _, v := range []struct{ name, how string }{
		{"dropped", "DROP ROLE %s"},
		{"nologin", "ALTER ROLE %s NOLOGIN"},
	} {
		t.Run(v.name, func(t *testing.T) {
			testkit.Begin(t)
			// 17+: a worker logs in as a NOLOGIN role too (la_compat.h).
			roleGoneWhileIdle(t, v.how, v.name == "nologin" && !testkit.WorkerNeedsLogin(t))
		})
	}
}

// roleGoneWhileIdle: with the role's worker idle, a transaction queues five
// tasks of the role and then changes the role (how). Unless the tasks
// still run (stillRuns), none may: the role also loses its rights on the
// marker table, so a task that ran anyway would fail, not add a value.
func roleGoneWhileIdle(t *testing.T, how string, stillRuns bool) {
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "idlegone")
	marker := testkit.MarkerTable(t, su, "idlegone", role)
	conn := testkit.Connect(t, role)
	idleWorkerOf(t, su, conn, role)
	require.NoError(t, conn.Close(testkit.Ctx(t)))
	tx, err := su.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(testkit.Ctx(t)) }()
	mustExecTx(t, tx, "SET LOCAL ROLE "+role)
	var ids []int64
	for i := range 5 {
		ids = append(ids, testkit.Submit(t, tx, testkit.MarkerInsert(marker, i)))
	}
	mustExecTx(t, tx, "RESET ROLE")
	if stillRuns {
		mustExecTx(t, tx, fmt.Sprintf(how, role))
		require.NoError(t, tx.Commit(testkit.Ctx(t)))
		testkit.RequireSucceeded(t, su, ids...)
		require.Equal(t, []int{0, 1, 2, 3, 4}, testkit.MarkerValues(t, marker), "each task ran once, in order")
		return
	}
	mustExecTx(t, tx, "REVOKE ALL ON "+marker+" FROM "+role)
	mustExecTx(t, tx, fmt.Sprintf(how, role))
	require.NoError(t, tx.Commit(testkit.Ctx(t)))
	for _, id := range ids {
		testkit.RequireFailed(t, su, id)
	}
	require.Empty(t, testkit.MarkerValues(t, marker), "no task of a role gone while its worker was idle may run")
}

func mustExecTx(t *testing.T, tx pgx.Tx, sql string) {
	t.Helper()
	_, err := tx.Exec(testkit.Ctx(t), sql)
	require.NoError(t, err, sql)
}

// TestStopTimes: pg_ctl stop -m fast with idle workers, and with a task
// running, takes well under the pg_ctl timeout; the server comes back.
// Workers wait testkit.SlowIdleTimeout (10 s) idle here: one that ignored the
// shutdown would hold it up that long (or its task's 60 s).
func TestStopTimes(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, testkit.SlowIdleTimeout)
	testkit.WaitNoneConnected(t, su)
	var ids []int64
	var conns []*pgx.Conn
	for range 3 {
		c := testkit.Connect(t, testkit.NewTempRole(t, su, "stoptime"))
		conns = append(conns, c)
		ids = append(ids, testkit.Submit(t, c, "SELECT 1"))
	}
	for i, id := range ids {
		testkit.RequireSucceeded(t, conns[i], id)
	}
	testkit.WaitWorkerCount(t, su, 3, "3 idle workers")
	stopFast(t, "with 3 idle workers")
	su = testkit.Connect(t, testkit.Superuser)
	testkit.StartTask(t, su, testkit.Connect(t, testkit.Superuser), testkit.SleepQuery(60, "stoptime"))
	stopFast(t, "with a task running pg_sleep(60)")
}

// stopFast stops the server with pg_ctl stop -m fast, requires it to take
// under testkit.HandoffBound (5 s: half an idle worker's wait here), and starts it
// again.
func stopFast(t *testing.T, what string) {
	t.Helper()
	start := time.Now()
	require.NoError(t, testkit.Cluster.Stop(pgcluster.Fast))
	took := time.Since(start)
	require.NoError(t, testkit.Cluster.StartServer())
	ok, last := testkit.ServerReady(t, testkit.WaitTimeout)
	require.True(t, ok, last)
	t.Logf("pg_ctl stop -m fast %s: %v", what, took.Round(time.Millisecond))
	require.Less(t, took, testkit.HandoffBound, "pg_ctl stop -m fast %s", what)
}
