package scale

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// Many databases with the extension, and what they cost while idle (README
// "The launcher" and "Architecture", control/README.md): a launcher
// connected to no database reads the demand board, and a database with
// nothing queued costs nothing.
//
// A role that is not a superuser (CREATEDB) copies its own database, which
// has the extension, more times than the demand board has places (512),
// and the server restarts:
//   - once the copies' scouts are done, a task in any copy starts at once;
//   - the start sweep scouts each database once, never with more than
//     max_workers + 1 of our processes alive, counted from fork to reap in
//     the postmaster log (an upper bound: a slot is reused only once the
//     postmaster has reaped its process), and ends;
//   - a task submitted during the sweep starts at once (the launcher keeps
//     a slot free of the sweep for it), and so does one after it;
//   - then nothing of ours is connected to any database, only the launcher
//     runs, and it uses next to no CPU, for longer than its naptime.
//
// Before the fix, the start sweep overflowed the board, the overflow asked
// for another sweep of every database, and so on for good: scouts without
// end, the launcher busy, tasks waiting minutes.

const (
	// manyDatabases is how many copies, besides the template and postgres:
	// beyond the board's 512, which is all the old failure needed (the
	// start sweep of 513 databases overflowed it and started over). More
	// only make the test longer (each copy, and each scout of the restart
	// sweep, is a fork and a catalog load): the unit tests of control/
	// (sweep_test.go) take the launcher through 10,000 databases.
	manyDatabases = 520
	// fewDatabases is how many copies on the docker backend unless
	// testkit.EnvLong is set: the idle cost and the sweep of 100 databases,
	// but not the board's overflow, in a third of the time.
	fewDatabases = 100
	// manyCopiers is how many sessions copy at once: CREATE DATABASE
	// ... TEMPLATE takes only a share lock on the template, and one
	// checkpoint can serve the requests of concurrent copies (FILE_COPY
	// waits for two per copy).
	manyCopiers     = 2
	manyClusterName = "many_dbs"
	// manyScoutSlack is how many scouts beyond one per database the sweep
	// may use: a database whose task's worker exited gets one more (README
	// "Workers leave when the work is done"), and a few were asked for twice.
	manyScoutSlack = 20
	// manyTaskStart bounds a task's start after its commit: the commit
	// wakes the launcher, which always keeps a slot free of the sweep for
	// such work, so no timer is on the path (the launcher's 1 s retry after
	// a refused launch, its 10 s nap): a fork and a login, with margin.
	manyTaskStart = time.Second
	// launcherIdleTicks bounds the launcher's CPU time (clock ticks of
	// 10 ms) while idle for testkit.LauncherNaptime + 1 s: one round that finds
	// nothing to do costs microseconds, so this is 1 % of a core.
	launcherIdleTicks = 11
	scoutType         = "lantern_async scout"
)

func TestManyDatabasesIdleAndServedAfterRestart(t *testing.T) {
	copies := manyDatabases
	if os.Getenv(pgcluster.EnvBackend) == pgcluster.BackendDocker && os.Getenv(testkit.EnvLong) == "" {
		// About 2 minutes of copies and a sweep: make test runs all of it on
		// the local backend; the container runs (make test-images, three
		// versions) make fewer copies, to keep CI within its time.
		copies = fewDatabases
		t.Logf("%d copies, not %d: set %s=1 for more than the demand board's places", copies, manyDatabases, testkit.EnvLong)
	}
	testkit.Begin(t)
	const maxWorkers = 4
	// debug1: the postmaster logs each background worker it starts and
	// reaps (the census); cluster_name tells its processes apart in /proc;
	// wal_level = minimal: a copy writes no WAL for its pages (nothing of
	// lantern_async depends on the WAL level).
	extra := testkit.StartExtraCluster(t, pgcluster.Options{MaxWorkers: maxWorkers, ExtraConf: []string{
		"log_min_messages = debug1",
		"cluster_name = '" + manyClusterName + "'",
		"wal_level = minimal",
		"max_wal_senders = 0",
	}})
	su := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
	tbl := makeTemplate(t, extra, su)

	// No superuser from here on: mallory copies her own database.
	copyStart := time.Now()
	copyAll(t, extra, copies, manyCopiers)
	t.Logf("%d × CREATE DATABASE mN TEMPLATE app as a CREATEDB role, %d sessions at once: %v", copies,
		manyCopiers, time.Since(copyStart).Round(time.Millisecond))
	databases := testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_database WHERE datallowconn")
	require.Greater(t, databases, copies, "databases that accept connections")

	taskIn := func(t *testing.T, what string) {
		t.Helper()
		db := fmt.Sprintf("m%d", 1+rand.IntN(copies))
		conn := testkit.ConnectTo(t, extra, db, "mallory")
		delay := testkit.SubmitTimed(t, conn, tbl).StartDelay(t, conn, 2*testkit.LauncherNaptime)
		t.Logf("%s: a task in %s started %v after its submit", what, db, delay.Round(time.Millisecond))
		require.Less(t, delay, manyTaskStart, "%s: a task in %s", what, db)
		testkit.CloseConn(t, conn)
	}

	testkit.WaitQuiet(t, extra, 5*time.Minute, "the scouts of the copies to finish", nil)
	taskIn(t, "before the restart")

	from := len(extra.Log())
	require.NoError(t, extra.Restart(pgcluster.Fast))
	restarted := time.Now()
	su = testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
	taskIn(t, "during the start sweep")

	took := testkit.WaitQuiet(t, extra, 5*time.Minute, "the start sweep of every database to end, leaving nothing connected",
		func(c testkit.ProcessCensus) (bool, string) {
			return c.Starts[scoutType] >= databases, fmt.Sprintf("%d scouts started for %d databases", c.Starts[scoutType], databases)
		})
	// A crash restart would sweep every database again (and its killed
	// processes leave the log's census): say so rather than count scouts.
	require.NotContains(t, extra.Log()[from:], testkit.CrashRestartLine, "a crash restart since the restart")
	census := testkit.CensusOf(testkit.SinceServerStart(extra.Log(), from))
	t.Logf("restart: quiet after %v (waited %v); %d scouts and %d workers started for %d databases; most of ours alive at once: %d (at %q)",
		time.Since(restarted).Round(time.Millisecond), took.Round(time.Millisecond),
		census.Starts[scoutType], census.Starts[testkit.BackendWorker], databases, census.MaxAlive, census.AtMax)
	require.Equal(t, 1, census.Starts[testkit.BackendLauncher], "launcher starts since the restart")
	require.Equal(t, 1, census.Starts[testkit.BackendWorker], "workers started since the restart: the task submitted during the sweep")
	require.LessOrEqual(t, census.Starts[scoutType], databases+manyScoutSlack, "scouts started since the restart")
	require.LessOrEqual(t, census.MaxAlive, maxWorkers+1, "our processes between fork and reap at once, max_workers = %d", maxWorkers)

	taskIn(t, "after the start sweep")
	t.Run("idle", func(t *testing.T) { requireIdle(t, extra, su) })
}

// makeTemplate makes database app, owned by mallory (CREATEDB, no
// superuser), with the extension, the grants she needs and a table for her
// tasks to write into; app is then left to itself, for CREATE DATABASE
// ... TEMPLATE app.
func makeTemplate(t *testing.T, c *pgcluster.Cluster, su *pgx.Conn) string {
	t.Helper()
	testkit.MustExec(t, su, "CREATE ROLE mallory LOGIN CREATEDB")
	testkit.MustExec(t, su, "CREATE DATABASE app OWNER mallory")
	app := testkit.ConnectTo(t, c, "app", testkit.Superuser)
	testkit.MustExec(t, app, "CREATE EXTENSION lantern_async")
	for _, g := range []string{
		"GRANT USAGE ON SCHEMA lantern TO mallory",
		"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lantern TO mallory",
		"GRANT SELECT ON lantern.tasks TO mallory",
	} {
		testkit.MustExec(t, app, g)
	}
	tbl := testkit.StartTable(t, app, "mallory")
	require.NoError(t, app.Close(testkit.Ctx(t)), "CREATE DATABASE ... TEMPLATE app needs app to itself")
	return tbl
}

// requireIdle holds that, once the work is done, no lantern_async process
// is connected to any database and exactly one launcher (connected to
// none) runs, for longer than the launcher's naptime, with no process of
// ours started meanwhile; on the local backend, the launcher's CPU time
// over that interval is also bounded.
func requireIdle(t *testing.T, c *pgcluster.Cluster, su *pgx.Conn) {
	t.Helper()
	testkit.WaitQuiet(t, c, testkit.WaitTimeout, "no lantern_async process connected to a database after the tasks", nil)
	pid := testkit.LauncherPid(t, su)
	before := -1
	if c.Backend() == pgcluster.BackendLocal { // reads /proc of the server's host
		before = cpuTicks(t, pid)
	}
	logFrom := len(c.Log())
	cond, closeConn := testkit.ReconnectingTo(c, func(conn *pgx.Conn) (bool, string, error) {
		in, launchers, err := testkit.OurProcesses(conn)
		return len(in) > 0 || launchers != 1,
			fmt.Sprintf("connected to a database: %v; launchers with no database: %d", in, launchers), err
	})
	defer closeConn()
	idle := testkit.LauncherNaptime + time.Second
	testkit.Never(t, idle, cond, "a lantern_async process in a database, or not exactly one launcher, while idle")
	require.Empty(t, testkit.CensusOf(c.Log()[logFrom:]).Starts, "processes of ours started while idle for %v", idle)
	if before >= 0 {
		used := cpuTicks(t, pid) - before
		t.Logf("launcher (pid %d) used %d clock ticks in %v idle", pid, used, idle)
		require.LessOrEqual(t, used, launcherIdleTicks, "launcher CPU ticks while idle")
	}
}

// copyAll makes databases m1..mN as mallory (no superuser), on sessions
// sessions copying at once; each session takes every sessions-th number.
// Errors are gathered and checked here: require must not run in the
// copying goroutines.
func copyAll(t *testing.T, c *pgcluster.Cluster, n, sessions int) {
	t.Helper()
	conns := make([]*pgx.Conn, sessions)
	for i := range conns {
		conns[i] = testkit.ConnectTo(t, c, testkit.DBName, "mallory")
	}
	errs := make(chan error, sessions)
	for s, conn := range conns {
		go func() {
			for i := 1 + s; i <= n; i += sessions {
				// FILE_COPY: faster here than WAL_LOG's page-by-page copy (fsync is off).
				q := fmt.Sprintf("CREATE DATABASE m%d TEMPLATE app STRATEGY FILE_COPY", i)
				if _, err := conn.Exec(context.Background(), q); err != nil {
					errs <- fmt.Errorf("%s: %w", q, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range conns {
		require.NoError(t, <-errs)
	}
}

// cpuTicks is a process's user plus system CPU time, in clock ticks, from
// /proc/<pid>/stat (fields 14 and 15; the command name before them may
// hold spaces, so they are counted from its closing parenthesis).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, err1 := strconv.Atoi(fields[11])
	stime, err2 := strconv.Atoi(fields[12])
	require.NoError(t, err1)
	require.NoError(t, err2)
	return utime + stime
}
