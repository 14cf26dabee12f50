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

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// More databases than the demand board has places (512), made by a role
// that is not a superuser (README "The launcher", control/README.md): a
// CREATEDB role copies its own database, which has the extension, 520
// times, and the server restarts. The start sweep then scouts every
// database once and ends; the launcher goes back to sleep; and a task in
// any database starts at once, before the restart, during the sweep and
// after it. Before the fix, the start sweep overflowed the board, the
// overflow asked for another sweep of every database, and so on for good:
// scouts without end, the launcher busy, tasks waiting minutes.

const (
	// manyDatabases is how many copies, besides the template and postgres:
	// beyond the board's 512, which is all the old failure needed (the
	// start sweep of 513 databases overflowed it and started over). More
	// only make the test longer (each copy, and each scout of the restart
	// sweep, is a fork and a catalog load): the unit tests of control/
	// (sweep_test.go) take the launcher through 10,000 databases.
	manyDatabases = 520
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
)

func TestManyDatabasesServedAfterRestart(t *testing.T) {
	// About 2 minutes of copies and a sweep: make test runs it on the local
	// backend; the container runs (make test-images, three versions) only
	// with LANTERN_ASYNC_TEST_LONG=1, to keep CI within its time.
	if os.Getenv(pgcluster.EnvBackend) == pgcluster.BackendDocker && os.Getenv(testkit.EnvLong) == "" {
		t.Skip("520 database copies and a restart sweep: set " + testkit.EnvLong + "=1 to run it on the docker backend")
	}
	testkit.Begin(t)
	// Each test of this package makes its databases in a cluster of its
	// own and spends much of its time waiting for that cluster: they run
	// side by side.
	t.Parallel()
	const maxWorkers = 4
	extra := testkit.StartExtraCluster(t, pgcluster.Options{MaxWorkers: maxWorkers, ExtraConf: []string{
		"log_min_messages = debug1",
		"cluster_name = '" + manyClusterName + "'",
		"wal_level = minimal", // a copy writes no WAL for its pages (see idle_cost_test.go)
		"max_wal_senders = 0",
	}})
	su := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
	testkit.MustExec(t, su, "CREATE ROLE mallory LOGIN CREATEDB")
	testkit.MustExec(t, su, "CREATE DATABASE app OWNER mallory")
	app := testkit.ConnectTo(t, extra, "app", testkit.Superuser)
	testkit.MustExec(t, app, "CREATE EXTENSION lantern_async")
	for _, g := range []string{
		"GRANT USAGE ON SCHEMA lantern TO mallory",
		"GRANT EXECUTE ON FUNCTION lantern.async_task(text) TO mallory",
		"GRANT SELECT ON lantern.tasks TO mallory",
	} {
		testkit.MustExec(t, app, g)
	}
	tbl := testkit.StartTable(t, app, "mallory")
	require.NoError(t, app.Close(testkit.Ctx(t)), "CREATE DATABASE ... TEMPLATE app needs app to itself")

	// No superuser from here on: mallory copies her own database.
	copyStart := time.Now()
	copyAll(t, extra, manyDatabases, manyCopiers)
	t.Logf("%d × CREATE DATABASE mN TEMPLATE app as a CREATEDB role, %d sessions at once: %v", manyDatabases,
		manyCopiers, time.Since(copyStart).Round(time.Millisecond))
	databases := testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_database WHERE datallowconn")
	require.Greater(t, databases, manyDatabases, "databases that accept connections")

	taskIn := func(t *testing.T, what string) {
		t.Helper()
		db := fmt.Sprintf("m%d", 1+rand.IntN(manyDatabases))
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
	t.Logf("restart: quiet after %v (waited %v); %d scouts and %d workers started for %d databases; most of ours alive at once: %d",
		time.Since(restarted).Round(time.Millisecond), took.Round(time.Millisecond),
		census.Starts[scoutType], census.Starts[testkit.BackendWorker], databases, census.MaxAlive)
	require.LessOrEqual(t, census.Starts[scoutType], databases+manyScoutSlack, "scouts started since the restart")
	require.LessOrEqual(t, census.MaxAlive, maxWorkers+1, "our processes between fork and reap at once")

	// The launcher's CPU time over a quiet interval longer than its nap,
	// with no process of ours started meanwhile.
	t.Run("launcher idle", func(t *testing.T) {
		if extra.Backend() != pgcluster.BackendLocal {
			t.Skip("reads /proc of the server's host")
		}
		pid := testkit.LauncherPid(t, su)
		before := cpuTicks(t, pid)
		logFrom := len(extra.Log())
		cond, closeConn := testkit.ReconnectingTo(extra, func(conn *pgx.Conn) (bool, string, error) {
			in, _, err := testkit.OurProcesses(conn)
			return len(in) > 0, fmt.Sprintf("connected to a database: %v", in), err
		})
		defer closeConn()
		testkit.Never(t, testkit.LauncherNaptime+time.Second, cond, "a lantern_async process in a database while idle")
		used := cpuTicks(t, pid) - before
		t.Logf("launcher (pid %d) used %d clock ticks in %v idle", pid, used, testkit.LauncherNaptime+time.Second)
		require.Empty(t, testkit.CensusOf(extra.Log()[logFrom:]).Starts, "processes of ours started while idle")
		require.LessOrEqual(t, used, launcherIdleTicks, "launcher CPU ticks while idle")
	})

	taskIn(t, "after the start sweep")
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
