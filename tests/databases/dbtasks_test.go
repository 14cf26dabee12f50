package databases

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

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
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	launcher := testkit.LauncherPid(t, su)
	db := testkit.NewExtensionDatabase(t, su, "la_forcedb")
	dboid := testkit.QueryOne[uint32](t, su, "SELECT oid FROM pg_database WHERE datname = $1", db)
	conn := testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	suDB := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
	rt := testkit.StartTask(t, suDB, conn, testkit.SleepQuery(600, "la_dropforce"))
	testkit.CloseConn(t, conn)
	testkit.CloseConn(t, suDB)

	start := time.Now()
	testkit.MustExec(t, su, "DROP DATABASE "+db+" WITH (FORCE)")
	t.Logf("DROP DATABASE ... WITH (FORCE) with a running task: %v", time.Since(start).Round(time.Millisecond))
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("worker %d gone", rt.Pid), testkit.WhileConnected(su, func() (bool, string) {
		procs, err := testkit.QueryRows[string](su, `
			SELECT pid || ' ' || backend_type FROM pg_stat_activity
			WHERE pid = $1 OR (datid = $2 AND backend_type IN ($3, $4))`, rt.Pid, dboid, testkit.BackendWorker, testkit.BackendScout)
		return err == nil && len(procs) == 0, fmt.Sprintf("still there: %v, err=%v", procs, err)
	}))
	require.Equal(t, launcher, testkit.LauncherPid(t, su), "the launcher survives")

	alice := testkit.Connect(t, "alice")
	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))
	require.Equal(t, launcher, testkit.LauncherPid(t, su), "the launcher survives")
}

// TestDropDatabaseWhileTaskRunsFails: DROP DATABASE without FORCE while a
// task runs there fails with PostgreSQL's 55006 naming one other session
// (the worker), and the task keeps running in the same process; it can
// then be canceled, and a new task of that database runs.
func TestDropDatabaseWhileTaskRunsFails(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	db := testkit.NewExtensionDatabase(t, su, "la_busydb")
	conn := testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	suDB := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
	rt := testkit.StartTask(t, suDB, conn, testkit.SleepQuery(600, "la_dropbusy"))
	testkit.CloseConn(t, conn)
	testkit.CloseConn(t, suDB)
	testkit.RequireNoClients(t, su, db)

	start := time.Now()
	_, err := su.Exec(testkit.Ctx(t), "DROP DATABASE "+db)
	t.Logf("DROP DATABASE with a running task: %v: %s", time.Since(start).Round(time.Millisecond), testkit.ErrorText(err))
	pgErr := testkit.RequirePgError(t, err, "55006", "DROP DATABASE while a task runs there")
	require.Contains(t, pgErr.Detail, "1 other session", "the worker running the task is the one other session")

	running, err := testkit.StillRunning(su, rt)
	require.NoError(t, err)
	require.True(t, running, "worker %d still runs the task after the failed DROP DATABASE", rt.Pid)
	conn = testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	require.Equal(t, "running", testkit.QueryOne[string](t, conn, "SELECT status FROM lantern.tasks WHERE jobid = $1", rt.ID))
	testkit.RequireCancelTask(t, conn, rt.ID, true)
	status, msg := testkit.WaitTask(t, conn, rt.ID)
	require.Equal(t, "canceled", status, "task %d: %s", rt.ID, msg)
	runTraceIn(t, db, "alice")
}
