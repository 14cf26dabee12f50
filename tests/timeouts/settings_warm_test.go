package timeouts

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// A worker that stays connected between tasks runs each one with its
// role's and database's settings (ALTER ROLE / ALTER DATABASE ... SET) as
// they are when the task starts, as a new session of psql -c would: set,
// changed, or removed since the worker logged in.
// README, "Timeouts" and "What a task's query can be".

// settingsMarker makes a table that role's tasks fill with recordSetting.
func settingsMarker(t *testing.T, su *pgx.Conn, role string) string {
	t.Helper()
	tbl := testkit.Ident(t, testkit.Uniq("settings_seen"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s (n int, v text); GRANT INSERT ON %[1]s TO %s", tbl, role))
	t.Cleanup(func() { testkit.CleanupExec(t, "DROP TABLE IF EXISTS "+tbl) })
	return tbl
}

// recordSetting is a task that records setting's value as row n of tbl.
func recordSetting(tbl string, n int, setting string) string {
	return fmt.Sprintf("INSERT INTO %s VALUES (%d, current_setting('%s'))", tbl, n, setting)
}

// seenSetting is what task n recorded in tbl.
func seenSetting(t *testing.T, su *pgx.Conn, tbl string, n int) string {
	t.Helper()
	return testkit.QueryOne[string](t, su, fmt.Sprintf("SELECT v FROM %s WHERE n = $1", tbl), n)
}

// requireIdleWorker waits until role has exactly one worker in db, waiting
// idle (its tasks are done): the next task of role finds it warm. (One
// that left because the settings changed may still be on its way out.)
func requireIdleWorker(t *testing.T, su *pgx.Conn, db, role string) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, "one warm worker of "+role+" in "+db, testkit.WhileConnected(su, func() (bool, string) {
		pids, err := testkit.WorkerPidsIn(su, db, role)
		return err == nil && len(pids) == 1, fmt.Sprintf("workers %v, err=%v", pids, err)
	}))
}

// TestWarmWorkerFollowsRoleSettings: each change is made while the role's
// worker waits warm (worker_idle_timeout 60 s), and the next task sees it:
// a statement_timeout set for the role stops it; work_mem set, then
// removed, reads as set, then as the default again; a
// lantern_async.task_timeout set for the role in this database stops it,
// and once removed no longer does. Before, a warm worker kept the settings
// it logged in with: the first pg_sleep(2) succeeded.
func TestWarmWorkerFollowsRoleSettings(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, 60*time.Second)
	role := testkit.NewTempRole(t, su, "warm_settings")
	tbl := settingsMarker(t, su, role)
	conn := testkit.Connect(t, role)

	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, recordSetting(tbl, 1, "work_mem")))
	require.Equal(t, "4MB", seenSetting(t, su, tbl, 1))

	requireIdleWorker(t, su, testkit.DBName, role)
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET statement_timeout = '300ms'", role))
	msg := testkit.RequireFailedWithSQLState(t, conn, testkit.Submit(t, conn, "SELECT pg_sleep(2)"), "57014")
	require.Equal(t, "ERROR:  canceling statement due to statement timeout", msg)

	requireIdleWorker(t, su, testkit.DBName, role)
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s RESET statement_timeout", role))
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET work_mem = '7MB'", role))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, recordSetting(tbl, 2, "work_mem")))
	require.Equal(t, "7MB", seenSetting(t, su, tbl, 2), "work_mem set for the role")

	requireIdleWorker(t, su, testkit.DBName, role)
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s RESET work_mem", role))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, recordSetting(tbl, 3, "work_mem")))
	require.Equal(t, "4MB", seenSetting(t, su, tbl, 3), "work_mem no longer set for the role")

	requireIdleWorker(t, su, testkit.DBName, role)
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET lantern_async.task_timeout = '1s'", role, testkit.DBName))
	id := testkit.Submit(t, conn, "SELECT pg_sleep(3)")
	require.Equal(t, taskTimeoutMessage("00:00:01"), testkit.RequireFailedWithSQLState(t, conn, id, "57014"))

	requireIdleWorker(t, su, testkit.DBName, role)
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s IN DATABASE %s RESET lantern_async.task_timeout", role, testkit.DBName))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT pg_sleep(1.5)"))
}

// TestWarmWorkerFollowsDatabaseSettings: ALTER DATABASE ... SET and RESET
// made while the worker waits warm reach its next task, in a database of
// the test's own.
func TestWarmWorkerFollowsDatabaseSettings(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, 60*time.Second)
	db := testkit.NewExtensionDatabase(t, su, "warm_db_settings")
	dbSu := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
	testkit.MustExec(t, dbSu, "CREATE TABLE seen (n int, v text); GRANT SELECT, INSERT ON seen TO alice")
	conn := testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	seen := func(n int) string {
		testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, fmt.Sprintf("INSERT INTO seen VALUES (%d, current_setting('work_mem'))", n)))
		return testkit.QueryOne[string](t, conn, "SELECT v FROM seen WHERE n = $1", n)
	}
	require.Equal(t, "4MB", seen(1))

	requireIdleWorker(t, su, db, "alice")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER DATABASE %s SET work_mem = '9MB'", db))
	require.Equal(t, "9MB", seen(2), "work_mem set for the database")
	requireIdleWorker(t, su, db, "alice")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER DATABASE %s RESET work_mem", db))
	require.Equal(t, "4MB", seen(3), "work_mem no longer set for the database")
}

// TestSettingChangesWithinBurst: the role has one slot (blockers hold the
// others) and two tasks queued at once; the first is running when work_mem
// is set for the role, and the second, started by the same warm worker
// after that, sees it, while the first kept the value it started with.
func TestSettingChangesWithinBurst(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	blockersLock := testkit.HoldAdvisoryLock(t)
	blockers := blockersLock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)
	role := testkit.NewTempRole(t, su, "burst_settings")
	tbl := settingsMarker(t, su, role)
	first := testkit.HoldAdvisoryLock(t)

	conn := testkit.Connect(t, role)
	tx, err := conn.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	ids := []int64{
		testkit.Submit(t, tx, first.WaitSQL()+"; "+recordSetting(tbl, 1, "work_mem")),
		testkit.Submit(t, tx, recordSetting(tbl, 2, "work_mem")),
	}
	require.NoError(t, tx.Commit(testkit.Ctx(t)))
	first.WaitBlocked(t, su, ids[:1])
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET work_mem = '7MB'", role))
	first.Release(t)
	testkit.RequireSucceeded(t, conn, ids...)
	require.Equal(t, "4MB", seenSetting(t, su, tbl, 1), "the first task started before the change")
	require.Equal(t, "7MB", seenSetting(t, su, tbl, 2), "the second task started after it")

	blockersLock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}
