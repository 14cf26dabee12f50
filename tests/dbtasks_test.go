package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// DROP DATABASE while a task of that database runs: the worker running it
// is a session like any other. WITH (FORCE) terminates it, by
// PostgreSQL's rules, and nothing else of ours suffers; without FORCE the
// command fails (55006) and the task is left alone.

// TestDropDatabaseForceWhileTaskRuns: DROP DATABASE ... WITH (FORCE)
// succeeds while a task of alice runs there; the worker is gone, the
// launcher is the same process, and tasks of the main database run.
func TestDropDatabaseForceWhileTaskRuns(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	launcher := launcherPid(t, su)
	db := newExtensionDatabase(t, su, "la_forcedb")
	dboid := queryOne[uint32](t, su, "SELECT oid FROM pg_database WHERE datname = $1", db)
	conn := connectTo(t, cluster, db, "alice")
	suDB := connectTo(t, cluster, db, superuser)
	rt := startTask(t, suDB, conn, sleepQuery(600, "la_dropforce"))
	closeConn(t, conn)
	closeConn(t, suDB)

	start := time.Now()
	mustExec(t, su, "DROP DATABASE "+db+" WITH (FORCE)")
	t.Logf("DROP DATABASE ... WITH (FORCE) with a running task: %v", time.Since(start).Round(time.Millisecond))
	requirePoll(t, waitTimeout, fmt.Sprintf("worker %d gone", rt.pid), whileConnected(su, func() (bool, string) {
		procs, err := queryRows[string](su, `
			SELECT pid || ' ' || backend_type FROM pg_stat_activity
			WHERE pid = $1 OR (datid = $2 AND backend_type IN ($3, $4))`, rt.pid, dboid, backendWorker, backendScout)
		return err == nil && len(procs) == 0, fmt.Sprintf("still there: %v, err=%v", procs, err)
	}))
	require.Equal(t, launcher, launcherPid(t, su), "the launcher survives")

	alice := connect(t, "alice")
	requireSucceeded(t, alice, submit(t, alice, "SELECT 1"))
	require.Equal(t, launcher, launcherPid(t, su), "the launcher survives")
}

// TestDropDatabaseWhileTaskRunsFails: DROP DATABASE without FORCE while a
// task runs there fails with PostgreSQL's 55006 naming one other session
// (the worker), and the task keeps running in the same process; it can
// then be canceled, and a new task of that database runs.
func TestDropDatabaseWhileTaskRunsFails(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	db := newExtensionDatabase(t, su, "la_busydb")
	conn := connectTo(t, cluster, db, "alice")
	suDB := connectTo(t, cluster, db, superuser)
	rt := startTask(t, suDB, conn, sleepQuery(600, "la_dropbusy"))
	closeConn(t, conn)
	closeConn(t, suDB)
	requireNoClients(t, su, db)

	start := time.Now()
	_, err := su.Exec(ctx(t), "DROP DATABASE "+db)
	t.Logf("DROP DATABASE with a running task: %v: %s", time.Since(start).Round(time.Millisecond), errorText(err))
	pgErr := requirePgError(t, err, "55006", "DROP DATABASE while a task runs there")
	require.Contains(t, pgErr.Detail, "1 other session", "the worker running the task is the one other session")

	running, err := stillRunning(su, rt)
	require.NoError(t, err)
	require.True(t, running, "worker %d still runs the task after the failed DROP DATABASE", rt.pid)
	conn = connectTo(t, cluster, db, "alice")
	require.Equal(t, "running", queryOne[string](t, conn, "SELECT status FROM lantern.tasks WHERE jobid = $1", rt.id))
	requireCancelTask(t, conn, rt.id, true)
	status, msg := waitTask(t, conn, rt.id)
	require.Equal(t, "canceled", status, "task %d: %s", rt.id, msg)
	runTraceIn(t, db, "alice")
}
