package tests

import (
	"fmt"
	"testing"
	"time"

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
	requireSucceeded(t, conn, submit(t, conn, "SELECT 1"))
	n := queryOne[int](t, su, "SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = $1 AND usename = $2",
		backendWorker, role)
	require.Equal(t, 1, n, "an idle worker of %s", role)
}

// quick runs sql as su and requires it to take well under the time an
// idle worker waits (the tests set slowIdleTimeout, 10 s: a command that
// waited for the idle worker to leave would take that long, and DROP
// DATABASE would fail after PostgreSQL's 5 s).
func quick(t *testing.T, su *pgx.Conn, sql string) {
	t.Helper()
	start := time.Now()
	mustExec(t, su, sql)
	took := time.Since(start)
	t.Logf("%s with an idle worker: %v", sql, took.Round(time.Millisecond))
	require.Less(t, took, handoffBound, "%s must not wait for an idle worker", sql)
}

// TestIdleWorkerBlocksNoAdminCommand: ALTER ROLE … NOLOGIN and DROP
// DATABASE run while a worker waits idle complete at once.
func TestIdleWorkerBlocksNoAdminCommand(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	setWorkerIdleTimeout(t, su, slowIdleTimeout)
	role := newTempRole(t, su, "idleadmin")
	t.Cleanup(func() { cleanupExec(t, "ALTER ROLE "+role+" LOGIN") })
	conn := connect(t, role)
	other := ident(t, uniq("idledb"))
	t.Cleanup(func() { cleanupExec(t, "DROP DATABASE IF EXISTS "+other) })
	mustExec(t, su, "CREATE DATABASE "+other)

	idleWorkerOf(t, su, conn, role)
	quick(t, su, "ALTER ROLE "+role+" NOLOGIN")
	mustExec(t, su, "ALTER ROLE "+role+" LOGIN")
	idleWorkerOf(t, su, conn, role)
	quick(t, su, "DROP DATABASE "+other)
}

// TestIdleWorkerAndDropExtension: DROP EXTENSION with an idle worker is
// immediate, and after CREATE EXTENSION the role's tasks run again.
func TestIdleWorkerAndDropExtension(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	setWorkerIdleTimeout(t, su, slowIdleTimeout)
	role := newTempRole(t, su, "idleext")
	resetExtensionAtEnd(t)
	conn := connect(t, role)
	idleWorkerOf(t, su, conn, role)
	quick(t, su, "DROP EXTENSION lantern_async")
	mustExec(t, su, "CREATE EXTENSION lantern_async")
	require.NoError(t, grantExtensionAccess(ctx(t), su))
	requireSucceeded(t, conn, submit(t, conn, "SELECT 1"))
}

// TestRoleGoneWhileIdle: tasks queued for a role in the transaction that
// drops it (or, on 15, takes LOGIN away), while its worker waits idle, end
// failed and never run. On 17+ a NOLOGIN role's tasks run.
func TestRoleGoneWhileIdle(t *testing.T) {
	begin(t)
	for _, v := range []struct{ name, how string }{
		{"dropped", "DROP ROLE %s"},
		{"nologin", "ALTER ROLE %s NOLOGIN"},
	} {
		t.Run(v.name, func(t *testing.T) {
			begin(t)
			// 17+: a worker logs in as a NOLOGIN role too (la_compat.h).
			roleGoneWhileIdle(t, v.how, v.name == "nologin" && !workerNeedsLogin(t))
		})
	}
}

// roleGoneWhileIdle: with the role's worker idle, a transaction queues five
// tasks of the role and then changes the role (how). Unless the tasks
// still run (stillRuns), none may: the role also loses its rights on the
// marker table, so a task that ran anyway would fail, not add a value.
func roleGoneWhileIdle(t *testing.T, how string, stillRuns bool) {
	su := connect(t, superuser)
	role := newTempRole(t, su, "idlegone")
	marker := markerTable(t, su, "idlegone", role)
	conn := connect(t, role)
	idleWorkerOf(t, su, conn, role)
	require.NoError(t, conn.Close(ctx(t)))
	tx, err := su.Begin(ctx(t))
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx(t)) }()
	mustExecTx(t, tx, "SET LOCAL ROLE "+role)
	var ids []int64
	for i := range 5 {
		ids = append(ids, submit(t, tx, markerInsert(marker, i)))
	}
	mustExecTx(t, tx, "RESET ROLE")
	if stillRuns {
		mustExecTx(t, tx, fmt.Sprintf(how, role))
		require.NoError(t, tx.Commit(ctx(t)))
		requireSucceeded(t, su, ids...)
		require.Equal(t, []int{0, 1, 2, 3, 4}, markerValues(t, marker), "each task ran once, in order")
		return
	}
	mustExecTx(t, tx, "REVOKE ALL ON "+marker+" FROM "+role)
	mustExecTx(t, tx, fmt.Sprintf(how, role))
	require.NoError(t, tx.Commit(ctx(t)))
	for _, id := range ids {
		requireFailed(t, su, id)
	}
	require.Empty(t, markerValues(t, marker), "no task of a role gone while its worker was idle may run")
}

func mustExecTx(t *testing.T, tx pgx.Tx, sql string) {
	t.Helper()
	_, err := tx.Exec(ctx(t), sql)
	require.NoError(t, err, sql)
}

// TestStopTimes: pg_ctl stop -m fast with idle workers, and with a task
// running, takes well under the pg_ctl timeout; the server comes back.
// Workers wait slowIdleTimeout (10 s) idle here: one that ignored the
// shutdown would hold it up that long (or its task's 60 s).
func TestStopTimes(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	setWorkerIdleTimeout(t, su, slowIdleTimeout)
	waitNoneConnected(t, su)
	var ids []int64
	var conns []*pgx.Conn
	for range 3 {
		c := connect(t, newTempRole(t, su, "stoptime"))
		conns = append(conns, c)
		ids = append(ids, submit(t, c, "SELECT 1"))
	}
	for i, id := range ids {
		requireSucceeded(t, conns[i], id)
	}
	waitWorkerCount(t, su, 3, "3 idle workers")
	stopFast(t, "with 3 idle workers")
	su = connect(t, superuser)
	startTask(t, su, connect(t, superuser), sleepQuery(60, "stoptime"))
	stopFast(t, "with a task running pg_sleep(60)")
}

// stopFast stops the server with pg_ctl stop -m fast, requires it to take
// under handoffBound (5 s: half an idle worker's wait here), and starts it
// again.
func stopFast(t *testing.T, what string) {
	t.Helper()
	start := time.Now()
	require.NoError(t, cluster.Stop(pgcluster.Fast))
	took := time.Since(start)
	require.NoError(t, cluster.StartServer())
	ok, last := serverReady(t, waitTimeout)
	require.True(t, ok, last)
	t.Logf("pg_ctl stop -m fast %s: %v", what, took.Round(time.Millisecond))
	require.Less(t, took, handoffBound, "pg_ctl stop -m fast %s", what)
}
