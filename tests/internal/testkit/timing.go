package testkit

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// How long after its submit a task started, databases of their own, and the
// lantern_async processes the postmaster started and reaped (from a debug1
// server log).

// StartTable creates a table (at timestamptz) through conn, in which a task
// records when it started; roles may insert into and read it.
func StartTable(t *testing.T, conn *pgx.Conn, roles ...string) string {
	t.Helper()
	tbl := Ident(t, Uniq("started"))
	MustExec(t, conn, fmt.Sprintf("CREATE TABLE %s (at timestamptz)", tbl))
	if len(roles) > 0 {
		MustExec(t, conn, fmt.Sprintf("GRANT INSERT, SELECT ON %s TO %s", tbl, strings.Join(roles, ", ")))
	}
	return tbl
}

// TimedTask is a task that records in a start table when it started.
type TimedTask struct {
	ID        int64
	tbl       string
	submitted time.Time // the server's clock_timestamp() just before the submit committed
	// RunAfter is the task's run_after (SubmitTimedAfter), on the server's
	// clock; the zero time for SubmitTimed.
	RunAfter time.Time
}

// SubmitTimed submits, through conn (autocommit), a task that inserts its
// start time (clock_timestamp() inside the task) into tbl. The submit
// time is clock_timestamp() taken in the submitting statement itself,
// after async_task returned: the commit follows it, so a delay measured
// from it errs on the long side (by the commit), never the short.
func SubmitTimed(t *testing.T, conn *pgx.Conn, tbl string) TimedTask {
	t.Helper()
	tt := TimedTask{tbl: tbl}
	require.NoError(t, conn.QueryRow(Ctx(t),
		"SELECT lantern.async_task($1), clock_timestamp()", tt.query()).Scan(&tt.ID, &tt.submitted), "submit into %s", tbl)
	return tt
}

// SubmitTimedAfter is SubmitTimed with run_after = the server's
// clock_timestamp() + in (a negative in: a time already past).
func SubmitTimedAfter(t *testing.T, conn *pgx.Conn, tbl string, in time.Duration) TimedTask {
	t.Helper()
	tt := TimedTask{tbl: tbl}
	require.NoError(t, conn.QueryRow(Ctx(t), `
		WITH a AS (SELECT clock_timestamp() AS now)
		SELECT lantern.async_task($1, run_after => a.now + make_interval(secs => $2)),
		       a.now + make_interval(secs => $2), clock_timestamp() FROM a`,
		tt.query(), in.Seconds()).Scan(&tt.ID, &tt.RunAfter, &tt.submitted), "submit into %s to run in %v", tbl, in)
	return tt
}

func (tt TimedTask) query() string {
	return fmt.Sprintf("INSERT INTO %s VALUES (clock_timestamp()) /* %s */", tt.tbl, Uniq("timed"))
}

// StartedAt waits (deadline waitFor) until tt succeeded, as seen through
// conn, and returns when it started, on the server's clock.
func (tt TimedTask) StartedAt(t *testing.T, conn *pgx.Conn, waitFor time.Duration) time.Time {
	t.Helper()
	var status, errMsg string
	RequirePoll(t, waitFor, fmt.Sprintf("task %d to finish", tt.ID), WhileConnected(conn, func() (bool, string) {
		st, err := QueryRows[string](conn,
			"SELECT coalesce(status, '<NULL>') || '|' || coalesce(error_message, '') FROM lantern.tasks WHERE jobid = $1", tt.ID)
		if err != nil || len(st) != 1 {
			return false, fmt.Sprintf("%v %v", st, err)
		}
		status, errMsg, _ = strings.Cut(st[0], "|")
		return IsFinal(status), "status " + status
	}))
	require.Equal(t, "succeeded", status, "task %d: %s", tt.ID, errMsg)
	return QueryOne[time.Time](t, conn, fmt.Sprintf("SELECT max(at) FROM %s", tt.tbl))
}

// StartDelay waits (deadline waitFor) until tt succeeded, as seen through
// conn, and returns how long after its submit it started.
func (tt TimedTask) StartDelay(t *testing.T, conn *pgx.Conn, waitFor time.Duration) time.Duration {
	t.Helper()
	return tt.StartedAt(t, conn, waitFor).Sub(tt.submitted)
}

// NewServedDatabase is NewExtensionDatabase with a superuser connection
// to the new database.
func NewServedDatabase(t *testing.T, su *pgx.Conn, base string) (string, *pgx.Conn) {
	t.Helper()
	db := NewExtensionDatabase(t, su, base)
	return db, ConnectTo(t, Cluster, db, Superuser)
}

// ---------------------------------------------------------------------------
// Our processes as the postmaster saw them (log_min_messages = debug1)

// The postmaster logs at DEBUG1, before it forks one, `starting background
// worker process "<bgw_name>"`, and once it has reaped it (a clean exit;
// anything else is logged at LOG) `background worker "<bgw_type>" (PID n)
// exited with exit code 0` or `... was terminated by signal n`. Replaying
// the log line by line, starts minus exits is the number of our processes
// between fork and reap at each point, each holding a max_worker_processes
// slot all that time: an upper bound of those alive at any instant, which
// no process escapes however short-lived.
var (
	BgwStartRe = regexp.MustCompile(`starting background worker process "(lantern_async (launcher|worker|scout))[^"]*"`)
	BgwExitRe  = regexp.MustCompile(`background worker "(lantern_async (launcher|worker|scout))[^"]*" \(PID \d+\) (exited|was terminated)`)
)

// ProcessCensus is what a debug1 log says about our processes.
type ProcessCensus struct {
	Starts   map[string]int // by bgw_type
	exits    map[string]int
	MaxAlive int    // most alive at once (fork to reap)
	AtMax    string // the log line where that maximum was reached
}

// CensusOf replays a server log that begins with a server start: each
// start adds one process, each exit removes one.
func CensusOf(log string) ProcessCensus {
	c := ProcessCensus{Starts: map[string]int{}, exits: map[string]int{}}
	alive := 0
	for _, line := range strings.Split(log, "\n") {
		if m := BgwStartRe.FindStringSubmatch(line); m != nil {
			c.Starts[m[1]]++
			alive++
			if alive > c.MaxAlive {
				c.MaxAlive, c.AtMax = alive, line
			}
		} else if m := BgwExitRe.FindStringSubmatch(line); m != nil {
			c.exits[m[1]]++
			alive--
		}
	}
	return c
}

// SinceServerStart is the part of log from the last server start, or crash
// restart, at or after offset from ("" when there is none yet). After a
// crash restart the postmaster logs no exit of the processes it killed,
// so a census across one would count them alive for good.
func SinceServerStart(log string, from int) string {
	tail := log[min(from, len(log)):]
	i := max(strings.LastIndex(tail, "starting PostgreSQL "), strings.LastIndex(tail, CrashRestartLine))
	if i < 0 {
		return ""
	}
	return tail[strings.LastIndex(tail[:i], "\n")+1:]
}

// CrashRestartLine is what the postmaster logs when it reinitializes after
// a process crashed.
const CrashRestartLine = "all server processes terminated; reinitializing"

// OurProcesses lists the lantern_async processes connected to a database
// and counts the launchers connected to none.
func OurProcesses(conn *pgx.Conn) (inDatabases []string, launchersNoDB int, err error) {
	inDatabases, err = QueryRows[string](conn, `
		SELECT backend_type || ' in ' || coalesce(datname::text, datid::text) || ' (pid ' || pid || ')'
		FROM pg_stat_activity
		WHERE backend_type LIKE 'lantern_async%' AND datid IS NOT NULL ORDER BY pid`)
	if err != nil {
		return nil, 0, err
	}
	err = conn.QueryRow(context.Background(), `SELECT count(*)::int FROM pg_stat_activity
		WHERE backend_type = $1 AND datid IS NULL`, BackendLauncher).Scan(&launchersNoDB)
	return inDatabases, launchersNoDB, err
}

// QuietFor is how long WaitQuiet wants no start or exit of ours in the
// server log: a worker's exit is followed, a few milliseconds later, by a
// scout of its database, so an instant with nothing running is not yet
// quiet.
const QuietFor = 500 * time.Millisecond

// WaitQuiet waits (deadline waitFor) until no lantern_async process is
// connected to any database of c and exactly one launcher runs, connected
// to none; the server log (c logs at debug1) says that only the launcher
// is alive since the last server start and has logged no start or exit of
// ours for QuietFor; and more, if not nil, holds for that census. It
// returns how long that took.
func WaitQuiet(t *testing.T, c *pgcluster.Cluster, waitFor time.Duration, what string, more func(ProcessCensus) (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	events, since := -1, time.Now()
	cond, closeConn := ReconnectingTo(c, func(conn *pgx.Conn) (bool, string, error) {
		in, launchers, err := OurProcesses(conn)
		if err != nil {
			return false, "", err
		}
		census := CensusOf(SinceServerStart(c.Log(), 0))
		alive, n := 0, 0
		for k, started := range census.Starts {
			alive += started - census.exits[k]
			n += started + census.exits[k]
		}
		if n != events {
			events, since = n, time.Now()
		}
		ok, seen := true, ""
		if more != nil {
			ok, seen = more(census)
		}
		return ok && len(in) == 0 && launchers == 1 && alive == 1 && time.Since(since) >= QuietFor,
			fmt.Sprintf("connected to a database: %v; launchers with no database: %d; alive per the log: %d, last start or exit %v ago; %s",
				in, launchers, alive, time.Since(since).Round(time.Millisecond), seen), nil
	})
	defer closeConn()
	RequirePoll(t, waitFor, what, cond)
	return time.Since(start)
}

// ReconnectingTo is reconnecting for a cluster of the test's own: cond
// runs on a superuser connection to database postgres of c, opened again
// after a failure. CloseConn must be called once polling is over.
func ReconnectingTo(c *pgcluster.Cluster, cond func(conn *pgx.Conn) (bool, string, error)) (_ func() (bool, string), closeConn func()) {
	var conn *pgx.Conn
	closeConn = func() {
		if conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
	}
	return func() (bool, string) {
		if conn == nil || conn.IsClosed() {
			cc, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var err error
			if conn, err = c.Connect(cc, DBName, Superuser); err != nil {
				conn = nil
				return false, err.Error()
			}
		}
		met, seen, err := cond(conn)
		if err != nil {
			closeConn()
			return false, err.Error()
		}
		return met, seen
	}, closeConn
}

// RequireNoneStartWhileWaiting waits until no process of ours has been in
// a database for 2 s (workers that found nothing to run leave after
// worker_idle_timeout, and a database's last worker leaving sends a scout
// there, at most one a second), then requires that for the launcher's nap
// + 1 s none connects to a database and none starts (the postmaster log's
// census): what is queued only waits. what says what is queued.
func RequireNoneStartWhileWaiting(t *testing.T, what string) {
	t.Helper()
	connected, closeConn := ReconnectingTo(Cluster, func(conn *pgx.Conn) (bool, string, error) {
		in, _, err := OurProcesses(conn)
		return len(in) > 0, fmt.Sprintf("connected to a database: %v", in), err
	})
	defer closeConn()
	var quietSince time.Time
	RequirePoll(t, WaitTimeout, "no process of ours in a database for 2 s", func() (bool, string) {
		in, seen := connected()
		if in || !strings.HasPrefix(seen, "connected to a database") {
			quietSince = time.Time{}
			return false, seen
		}
		if quietSince.IsZero() {
			quietSince = time.Now()
		}
		return time.Since(quietSince) > 2*time.Second, seen
	})
	from := len(Cluster.Log())
	idle := LauncherNaptime + time.Second
	Never(t, idle, connected, "a lantern_async process in a database while only "+what+" are queued")
	require.Empty(t, CensusOf(Cluster.Log()[from:]).Starts, "processes of ours started in %v", idle)
}
