package scale

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Idle cost (README "Architecture": a launcher connected to no database
// reads the demand board; a database with nothing queued costs nothing).
// With 100 databases that have the extension, once their work is done no
// lantern_async process stays connected to any of them; a restart sweeps
// every database once, within max_workers slots; and a task afterwards runs
// at once.

const (
	idleDatabases   = 100
	idleClusterName = "idle100"
	// scoutSlack is how many scouts beyond one per database the start
	// sweep may use (a database whose sweep was asked for again).
	scoutSlack = 3
)

// TestIdleCostHundredDatabases runs on a cluster of its own: max_workers
// 4; log_min_messages = debug1, so that the postmaster logs each background
// worker it starts and reaps; cluster_name, so that its processes can be
// told apart in /proc; wal_level = minimal, so that a database copy writes
// no WAL for its pages (99 copies took 8–20 s here instead of 24–40 s with
// wal_level = replica; nothing of lantern_async depends on the WAL level).
//
// During the start sweep our processes are counted three ways: the
// postmaster log (every process from fork to reap, however short-lived,
// from the very start: an upper bound), /proc (live processes across the
// restart, with no connection needed: a lower bound, see procSampler) and
// pg_stat_activity sampled inside the server (what the server itself
// shows; it starts only once the restarted server accepts connections,
// after the first few scouts). pg_stat_activity must never show more than
// max_workers + 1; the process counts are a subtest of their own.
func TestIdleCostHundredDatabases(t *testing.T) {
	testkit.Begin(t)
	// Each test of this package makes its databases in a cluster of its
	// own and spends much of its time waiting for that cluster: they run
	// side by side.
	t.Parallel()
	const maxWorkers = 4
	testStart := time.Now()
	extra := testkit.StartExtraCluster(t, pgcluster.Options{MaxWorkers: maxWorkers, ExtraConf: []string{
		"log_min_messages = debug1",
		"cluster_name = '" + idleClusterName + "'",
		"wal_level = minimal",
		"max_wal_senders = 0",
	}})
	su := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
	for _, r := range testkit.TestRoles {
		testkit.MustExec(t, su, fmt.Sprintf("CREATE ROLE %s LOGIN", r))
	}

	// d0 has the extension, the grants and a table for the tasks to write
	// into; d1 … d99 are copies of it.
	testkit.MustExec(t, su, "CREATE DATABASE d0")
	d0 := testkit.ConnectTo(t, extra, "d0", testkit.Superuser)
	testkit.MustExec(t, d0, "CREATE EXTENSION lantern_async")
	require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), d0))
	tbl := testkit.StartTable(t, d0, testkit.TestRoles...)
	require.NoError(t, d0.Close(testkit.Ctx(t)), "CREATE DATABASE ... TEMPLATE d0 needs d0 to itself")
	copyStart := time.Now()
	var slowest time.Duration
	for i := 1; i < idleDatabases; i++ {
		one := time.Now()
		testkit.MustExec(t, su, fmt.Sprintf("CREATE DATABASE d%d TEMPLATE d0", i))
		slowest = max(slowest, time.Since(one))
	}
	t.Logf("%d × CREATE DATABASE dN TEMPLATE d0: %v (slowest %v)", idleDatabases-1,
		time.Since(copyStart).Round(time.Millisecond), slowest.Round(time.Millisecond))
	require.Equal(t, idleDatabases, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM pg_database WHERE datname ~ '^d[0-9]+$'"))

	// One task in a few of them.
	for _, db := range []string{"d3", "d42", "d77", "d99"} {
		conn := testkit.ConnectTo(t, extra, db, "alice")
		delay := testkit.SubmitTimed(t, conn, tbl).StartDelay(t, conn, testkit.WaitTimeout)
		t.Logf("task in %s started %v after its submit", db, delay.Round(time.Millisecond))
		require.NoError(t, conn.Close(testkit.Ctx(t)))
	}

	// (a) Once the workers' idle timeout and the scouts that follow them
	// are over, nothing of ours is connected to a database, and it stays so
	// for longer than the launcher's naptime.
	t.Run("a idle", func(t *testing.T) {
		took := testkit.WaitQuiet(t, extra, testkit.WaitTimeout, "no lantern_async process connected to a database after the tasks", nil)
		t.Logf("quiet (for %v) %v after the last task", testkit.QuietFor, took.Round(time.Millisecond))
		from := len(extra.Log())
		cond, closeConn := testkit.ReconnectingTo(extra, func(conn *pgx.Conn) (bool, string, error) {
			in, launchers, err := testkit.OurProcesses(conn)
			return len(in) > 0 || launchers != 1,
				fmt.Sprintf("connected to a database: %v; launchers with no database: %d", in, launchers), err
		})
		defer closeConn()
		testkit.Never(t, testkit.LauncherNaptime+time.Second, cond, "a lantern_async process in a database, or not exactly one launcher, while idle")
		idle := testkit.CensusOf(extra.Log()[from:])
		require.Empty(t, idle.Starts, "background workers of ours started while idle for %v", testkit.LauncherNaptime+time.Second)
	})

	// (b) A restart: the start sweep visits every database that accepts
	// connections, one scout each, never with more than max_workers
	// processes besides the launcher, and leaves nothing connected.
	t.Run("b restart sweep", func(t *testing.T) {
		databases := testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_database WHERE datallowconn")
		from := len(extra.Log())
		procs := startProcSampler(t, idleClusterName)
		require.NoError(t, extra.Restart(pgcluster.Fast))
		smp := startSampler(t, extra)
		took := testkit.WaitQuiet(t, extra, time.Minute, "the start sweep of every database to finish, leaving nothing connected",
			func(c testkit.ProcessCensus) (bool, string) {
				return c.Starts[scoutType] >= databases, fmt.Sprintf("%d scouts started for %d databases", c.Starts[scoutType], databases)
			})
		t.Logf("restarted and quiet (for %v) after %v", testkit.QuietFor, took.Round(time.Millisecond))
		samples := smp.stop(t)
		live := procs.stop(t)

		log := testkit.SinceServerStart(extra.Log(), from)
		require.NotEmpty(t, log, "a server start in the log")
		census := testkit.CensusOf(log)
		scouts := census.Starts[scoutType]
		first, last := logTimes(log, scoutStartLine)
		t.Logf("%d databases accept connections; since the restart the postmaster started %d scouts (from %s to %s), %d workers, %d launcher",
			databases, scouts, first, last, census.Starts[testkit.BackendWorker], census.Starts[testkit.BackendLauncher])
		t.Logf("pg_stat_activity, sampled in the server: %d samples from %s to %s (%d of the scout starts were logged before it began); "+
			"most at once: %d (%d launcher, %d workers, %d scouts); scouts seen in %d databases",
			samples.iterations, samples.began, samples.ended, countBefore(log, scoutStartLine, samples.began),
			samples.max, samples.maxLaunchers, samples.maxWorkers, samples.maxScouts, samples.scoutDatabases)
		t.Logf("/proc: %d scans over the restart (%v); most live at once: %d %v",
			live.scans, live.took.Round(time.Millisecond), live.max, live.atMax)
		t.Logf("postmaster log: most of our processes between fork and reap at once: %d (reached at %q)", census.MaxAlive, census.AtMax)

		require.Equal(t, 1, census.Starts[testkit.BackendLauncher], "launcher starts since the restart")
		require.Zero(t, census.Starts[testkit.BackendWorker], "workers started with no task queued")
		require.GreaterOrEqual(t, scouts, databases, "one scout per database at least")
		require.LessOrEqual(t, scouts, databases+scoutSlack, "scouts started by the start sweep")
		require.LessOrEqual(t, samples.max, maxWorkers+1, "our processes in pg_stat_activity at once, max_workers = %d", maxWorkers)

		// A slot is reused only once the postmaster has reaped its previous
		// process (la_reap_one): counted from fork to reap, never more.
		t.Run("processes within max_workers+1", func(t *testing.T) {
			require.LessOrEqual(t, live.max, maxWorkers+1, "our processes alive at once (/proc)")
			require.LessOrEqual(t, census.MaxAlive, maxWorkers+1, "our processes between fork and reap at once (postmaster log)")
		})
	})

	// (c) A task in a database the sweep found idle runs at once.
	t.Run("c task after", func(t *testing.T) {
		conn := testkit.ConnectTo(t, extra, "d57", "alice")
		delay := testkit.SubmitTimed(t, conn, tbl).StartDelay(t, conn, testkit.WaitTimeout)
		t.Logf("task in d57 started %v after its submit; whole test %v", delay.Round(time.Millisecond),
			time.Since(testStart).Round(time.Second))
		// Its commit wakes the launcher; a lost wake-up waits for the 10 s nap.
		require.Less(t, delay, testkit.LauncherNaptime/2, "a task submitted in d57 after the sweep")
	})
}

const (
	scoutType      = "lantern_async scout"
	scoutStartLine = `starting background worker process "` + scoutType
)

// logTimes returns the timestamps (log_line_prefix %m) of the first and
// last lines of log containing s.
func logTimes(log, s string) (first, last string) {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, s) && len(line) >= 23 {
			if first == "" {
				first = line[:23]
			}
			last = line[:23]
		}
	}
	return first, last
}

// countBefore counts the lines of log containing s whose timestamp
// (log_line_prefix %m, "YYYY-MM-DD HH:MM:SS.mmm", the log's time zone)
// sorts before ts (the same format and zone).
func countBefore(log, s, ts string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, s) && len(line) >= 23 && line[:23] < ts {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------------------
// Sampling our processes from inside the server

// A sampler is one DO block on a session of its own that reads
// pg_stat_activity in a loop as fast as the server can: each pass discards
// the statistics snapshot (pg_stat_clear_snapshot(), else a transaction
// sees the same rows throughout) and counts our processes by type; a row
// goes into a temporary table whenever the set of pids changes. Sampling in
// the server, rather than polling from the test, costs no round trip per
// sample (over ten thousand samples a second here, against a few hundred),
// so a scout that lives a few milliseconds is seen. It still cannot see a
// process before it has connected (pg_stat_activity lists it from then on)
// nor what happened before the server accepted connections: the postmaster
// log census (testkit.CensusOf) and the /proc sampler cover those. The loop ends
// when the test releases an advisory lock it holds (or after 2 min).
type sampler struct {
	conn, ctl *pgx.Conn
	done      chan error
	stopped   bool
}

const samplerLock = 4_242_001

// samplerResult summarizes what a sampler saw.
type samplerResult struct {
	iterations                               int64
	began, ended                             string // in the log's time zone, as log_line_prefix %m
	max, maxLaunchers, maxWorkers, maxScouts int
	scoutDatabases                           int
}

func startSampler(t *testing.T, c *pgcluster.Cluster) *sampler {
	t.Helper()
	s := &sampler{ctl: testkit.ConnectTo(t, c, testkit.DBName, testkit.Superuser), conn: testkit.ConnectTo(t, c, testkit.DBName, testkit.Superuser), done: make(chan error, 1)}
	testkit.MustExec(t, s.ctl, "SELECT pg_advisory_lock($1)", samplerLock)
	testkit.MustExec(t, s.conn, `
		CREATE TEMP TABLE samples (at timestamptz, launchers int, workers int, scouts int);
		CREATE TEMP TABLE scout_dbs (datid oid PRIMARY KEY);
		CREATE TEMP TABLE sampler_run (iterations bigint, began timestamptz, ended timestamptz)`)
	go func() {
		_, err := s.conn.Exec(context.Background(), fmt.Sprintf(`
DO $$
DECLARE
	began timestamptz := clock_timestamp();
	n bigint := 0;
	pids int[];
	prev int[] := '{}';
	l int; w int; sc int;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();
		SELECT coalesce(array_agg(pid ORDER BY pid), '{}'),
		       count(*) FILTER (WHERE backend_type = 'lantern_async launcher'),
		       count(*) FILTER (WHERE backend_type = 'lantern_async worker'),
		       count(*) FILTER (WHERE backend_type = 'lantern_async scout')
		  INTO pids, l, w, sc
		  FROM pg_stat_activity WHERE backend_type LIKE 'lantern_async%%';
		n := n + 1;
		IF pids IS DISTINCT FROM prev THEN
			INSERT INTO samples VALUES (clock_timestamp(), l, w, sc);
			INSERT INTO scout_dbs SELECT datid FROM pg_stat_activity
			 WHERE backend_type = 'lantern_async scout' AND datid IS NOT NULL ON CONFLICT DO NOTHING;
			prev := pids;
		END IF;
		EXIT WHEN pg_try_advisory_lock_shared(%d) OR clock_timestamp() > began + interval '2 min';
	END LOOP;
	INSERT INTO sampler_run VALUES (n, began, clock_timestamp());
END $$`, samplerLock))
		s.done <- err
	}()
	// A test that fails half-way must not close s.conn under the DO block.
	t.Cleanup(func() {
		if s.stopped {
			return
		}
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = s.ctl.Exec(c, "SELECT pg_advisory_unlock_all()")
		select {
		case <-s.done:
		case <-c.Done():
		}
	})
	return s
}

// stop ends the sampling loop and reads its results.
func (s *sampler) stop(t *testing.T) samplerResult {
	t.Helper()
	s.stopped = true
	testkit.MustExec(t, s.ctl, "SELECT pg_advisory_unlock($1)", samplerLock)
	var err error
	testkit.RequirePoll(t, testkit.WaitTimeout, "the sampler to stop", func() (bool, string) {
		select {
		case err = <-s.done:
			return true, ""
		default:
			return false, "still sampling"
		}
	})
	require.NoError(t, err, "the sampler's DO block")
	var r samplerResult
	const ts = `to_char(%s AT TIME ZONE current_setting('log_timezone'), 'YYYY-MM-DD HH24:MI:SS.MS')`
	require.NoError(t, s.conn.QueryRow(testkit.Ctx(t), fmt.Sprintf(`
		SELECT iterations, %s, %s,
		       (SELECT coalesce(max(launchers + workers + scouts), 0) FROM samples),
		       (SELECT coalesce(max(launchers), 0) FROM samples),
		       (SELECT coalesce(max(workers), 0) FROM samples),
		       (SELECT coalesce(max(scouts), 0) FROM samples),
		       (SELECT count(*)::int FROM scout_dbs)
		FROM sampler_run`, fmt.Sprintf(ts, "began"), fmt.Sprintf(ts, "ended"))).Scan(
		&r.iterations, &r.began, &r.ended, &r.max, &r.maxLaunchers, &r.maxWorkers, &r.maxScouts, &r.scoutDatabases))
	return r
}

// A procSampler scans /proc in a loop, as fast as it can, for the live
// processes of one cluster whose title (cluster_name set) says they are
// ours: "postgres: <cluster>: lantern_async …". It needs no connection, so
// it runs across a restart and sees a process from the moment it has set
// its title, before it connects; a process that has exited (a zombie until
// the postmaster reaps it) has an empty cmdline and is not counted. A scan
// takes milliseconds, so one scan could see an old process early and its
// successor late without the two ever living together: a scan that sees
// more than any before is read again, and only the processes seen alive in
// both passes count. Every read of the first pass precedes every read of
// the second, so those were all alive at once, at the instant between the
// passes: the maximum is a lower bound of the truth, never an artefact of
// the scan. Local backend only (the server's processes are on this host).
type procSampler struct {
	stopc chan struct{}
	done  chan procResult
}

type procResult struct {
	scans int
	max   int      // confirmed at once (both passes)
	atMax []string // their titles
	took  time.Duration
}

func startProcSampler(t *testing.T, clusterName string) *procSampler {
	t.Helper()
	prefix := []byte("postgres: " + clusterName + ": lantern_async")
	_, err := os.ReadDir("/proc")
	require.NoError(t, err, "/proc")
	p := &procSampler{stopc: make(chan struct{}), done: make(chan procResult, 1)}
	// ours reads a process's title if it is one of ours.
	ours := func(pid string) (string, bool) {
		b, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil || !bytes.HasPrefix(b, prefix) {
			return "", false
		}
		return string(bytes.TrimRight(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), " ")), true
	}
	go func() {
		var r procResult
		start := time.Now()
		for {
			select {
			case <-p.stopc:
				r.took = time.Since(start)
				p.done <- r
				return
			default:
			}
			entries, err := os.ReadDir("/proc")
			if err != nil {
				continue
			}
			var pids []string
			for _, e := range entries {
				if n := e.Name(); n[0] >= '0' && n[0] <= '9' {
					if _, ok := ours(n); ok {
						pids = append(pids, n)
					}
				}
			}
			r.scans++
			if len(pids) <= r.max {
				continue
			}
			var both []string
			for _, pid := range pids {
				if title, ok := ours(pid); ok {
					both = append(both, title+" (pid "+pid+")")
				}
			}
			if len(both) > r.max {
				r.max, r.atMax = len(both), both
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-p.stopc:
		default:
			close(p.stopc)
		}
	})
	return p
}

// stop ends the scanning and returns what it saw.
func (p *procSampler) stop(t *testing.T) procResult {
	t.Helper()
	close(p.stopc)
	var r procResult
	testkit.RequirePoll(t, testkit.WaitTimeout, "the /proc sampler to stop", func() (bool, string) {
		select {
		case r = <-p.done:
			return true, ""
		default:
			return false, "still scanning"
		}
	})
	return r
}
