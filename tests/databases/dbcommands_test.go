package databases

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
// DATABASE ... TEMPLATE need the database to themselves: PostgreSQL waits
// 5 s for other sessions, then fails with 55006. An idle worker of ours
// must not be such a session. The tests make idle workers wait a minute
// (lantern_async.worker_idle_timeout = 60s), so that a worker is
// certainly still connected when the command runs: without the utility
// hook that asks it to leave, each command would fail after 5 s.

// dbCommandTimeout is how long a command that needs a database to itself
// may take when only our idle processes are there: well under the 5 s
// PostgreSQL waits for other sessions.
const dbCommandTimeout = 2 * time.Second

// quickDBCommand runs sql as su and requires it to succeed well within
// PostgreSQL's 5 s wait.
func quickDBCommand(t *testing.T, su *pgx.Conn, sql string) {
	t.Helper()
	start := time.Now()
	_, err := su.Exec(testkit.Ctx(t), sql)
	took := time.Since(start)
	require.NoError(t, err, "%s with an idle worker connected (after %v)", sql, took.Round(time.Millisecond))
	t.Logf("%s with an idle worker connected: %v", sql, took.Round(time.Millisecond))
	require.Less(t, took, dbCommandTimeout, "%s must not wait for an idle worker", sql)
}

// requireGone requires that process pid has ended (the command that
// needed its database succeeded, so it has).
func requireGone(t *testing.T, su *pgx.Conn, pid int) {
	t.Helper()
	require.Zero(t, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1", pid),
		"the idle worker %d left", pid)
}

// runTraceIn runs testkit.TraceSQL as role in db, requires it to succeed and
// returns the row it wrote.
func runTraceIn(t *testing.T, db, role string) testkit.TraceRow {
	t.Helper()
	conn := testkit.ConnectTo(t, testkit.Cluster, db, role)
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, testkit.TraceSQL))
	testkit.CloseConn(t, conn)
	trace := testkit.ReadTrace(t, db)
	require.NotEmpty(t, trace)
	last := trace[len(trace)-1]
	require.Equal(t, []string{db, role, role}, []string{last.DB, last.User, last.Session}, "the task ran in %s as %s", db, role)
	return last
}

// TestDatabaseCommandsWithIdleWorker: each command succeeds at once while
// a worker that just ran a task there waits idle, and the database's
// tasks still run afterwards where it still exists.
func TestDatabaseCommandsWithIdleWorker(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, 60*time.Second)

	t.Run("drop", func(t *testing.T) {
		testkit.Begin(t)
		db := testkit.NewExtensionDatabase(t, su, "la_dropdb")
		pid := testkit.IdleWorkerIn(t, su, db, "alice")
		testkit.RequireNoClients(t, su, db)
		quickDBCommand(t, su, "DROP DATABASE "+db)
		requireGone(t, su, pid)
	})

	t.Run("rename", func(t *testing.T) {
		testkit.Begin(t)
		db := testkit.NewExtensionDatabase(t, su, "la_renamedb")
		renamed := testkit.Ident(t, testkit.Uniq("la_renamed"))
		testkit.DropDatabaseAtEnd(t, renamed)
		pid := testkit.IdleWorkerIn(t, su, db, "alice")
		testkit.RequireNoClients(t, su, db)
		quickDBCommand(t, su, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", db, renamed))
		requireGone(t, su, pid)
		runTraceIn(t, renamed, "alice")
	})

	t.Run("set tablespace", func(t *testing.T) {
		testkit.Begin(t)
		dir := testkit.TablespaceDir(t)
		ts := testkit.Ident(t, testkit.Uniq("la_ts"))
		t.Cleanup(func() { testkit.CleanupExec(t, "DROP TABLESPACE IF EXISTS "+ts) })
		testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLESPACE %s LOCATION %s", ts, testkit.Lit(dir)))
		db := testkit.NewExtensionDatabase(t, su, "la_movedb")
		pid := testkit.IdleWorkerIn(t, su, db, "alice")
		testkit.RequireNoClients(t, su, db)
		quickDBCommand(t, su, fmt.Sprintf("ALTER DATABASE %s SET TABLESPACE %s", db, ts))
		requireGone(t, su, pid)
		require.Equal(t, ts, testkit.QueryOne[string](t, su,
			"SELECT spcname::text FROM pg_database d JOIN pg_tablespace s ON s.oid = d.dattablespace WHERE datname = $1", db))
		runTraceIn(t, db, "alice")
	})

	t.Run("create from template", func(t *testing.T) {
		testkit.Begin(t)
		src := testkit.NewExtensionDatabase(t, su, "la_srcdb")
		dst := testkit.Ident(t, testkit.Uniq("la_copydb"))
		testkit.DropDatabaseAtEnd(t, dst)
		pid := testkit.IdleWorkerIn(t, su, src, "alice")
		testkit.RequireNoClients(t, su, src)
		quickDBCommand(t, su, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", dst, src))
		requireGone(t, su, pid)
		dc := testkit.ConnectTo(t, testkit.Cluster, dst, testkit.Superuser)
		require.Equal(t, []bool{true, true, true}, testkit.QueryAll[bool](t, dc, `
			SELECT to_regclass(c) IS NOT NULL FROM unnest(ARRAY['lantern.tasks', 'lantern.task_owners', 'lantern.task_errors']) c`),
			"the copy has the extension's tables")
		require.True(t, testkit.QueryOne[bool](t, dc, "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'lantern_async')"))
		testkit.CloseConn(t, dc)
		runTraceIn(t, dst, "alice")
		runTraceIn(t, src, "alice")
	})
}

// TestDatabaseCommandsOfOthersKeepIdleWorker: a CREATEDB role that does
// not own the database gets PostgreSQL's permission error for each
// command, and the idle worker there is not asked to leave: it stays
// connected and runs the next task itself.
func TestDatabaseCommandsOfOthersKeepIdleWorker(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, 60*time.Second)
	intruder := testkit.NewTempRole(t, su, "la_createdb")
	testkit.MustExec(t, su, "ALTER ROLE "+intruder+" CREATEDB")
	src := testkit.NewExtensionDatabase(t, su, "la_notmine")
	dst := testkit.Ident(t, testkit.Uniq("la_notcopy"))
	testkit.DropDatabaseAtEnd(t, dst)
	pid := testkit.IdleWorkerIn(t, su, src, "alice")
	ic := testkit.Connect(t, intruder)

	for _, sql := range []string{
		fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", dst, src),
		"DROP DATABASE " + src,
		fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", src, dst),
		fmt.Sprintf("ALTER DATABASE %s SET TABLESPACE pg_default", src),
	} {
		_, err := ic.Exec(testkit.Ctx(t), sql)
		testkit.RequirePgError(t, err, "42501", "%s by a role that does not own %s", sql, src)
		t.Logf("%s: %s", sql, testkit.ErrorText(err))
		pids, err := testkit.WorkerPidsIn(su, src, "alice")
		require.NoError(t, err)
		require.Equal(t, []int{pid}, pids, "after %s by %s, the idle worker is still connected", sql, intruder)
	}
	require.Equal(t, pid, runTraceIn(t, src, "alice").Pid, "the idle worker, never asked to leave, runs the next task")
}

// TestDropDatabaseLaunchesNothingIntoIt: the idle worker that DROP
// DATABASE evicts had run tasks, which makes the launcher want a scout of
// that database; once the DROP has committed, that demand must be
// forgotten, not served: no process of ours may try to connect to the
// dropped database (a bgworker connecting by OID to a database that is
// gone logs "FATAL:  database N does not exist"). The race is narrow, so
// the test drops five such databases.
func TestDropDatabaseLaunchesNothingIntoIt(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, 60*time.Second)
	from := len(testkit.Cluster.Log())
	var oids []uint32
	for range 5 {
		db := testkit.NewExtensionDatabase(t, su, "la_dropnothing")
		oids = append(oids, testkit.QueryOne[uint32](t, su, "SELECT oid FROM pg_database WHERE datname = $1", db))
		testkit.IdleWorkerIn(t, su, db, "alice")
		testkit.RequireNoClients(t, su, db)
		quickDBCommand(t, su, "DROP DATABASE "+db)
	}
	testkit.Never(t, time.Second, func() (bool, string) {
		log := testkit.Cluster.Log()
		if len(log) < from {
			return false, "the server log is shorter than before"
		}
		var seen []string
		for _, l := range strings.Split(log[from:], "\n") {
			for _, oid := range oids {
				if strings.Contains(l, fmt.Sprintf("database %d does not exist", oid)) ||
					strings.Contains(l, fmt.Sprintf("for database %d ", oid)) {
					seen = append(seen, l)
				}
			}
		}
		return len(seen) > 0, strings.Join(seen, "\n")
	}, "nothing of ours tries to connect to the dropped databases")
}
