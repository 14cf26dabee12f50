package standby

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Hot standby and failover. These tests start clusters of their own (a
// primary and its streaming standby) rather than using the shared one: the
// failover test stops its primary. They rely only on what SQL shows
// (lantern.tasks rows, errors and their SQLSTATEs), on pg_stat_activity
// rows whose backend_type starts with "lantern_async", and on the server
// log, not on which background processes the extension runs. They do not
// call begin, whose health check is about the shared cluster.

const (
	// replayTimeout bounds a wait for the standby to replay the primary's WAL.
	replayTimeout = 15 * time.Second
	// quietSeconds is how long (by pg_sleep on the primary) the standby's
	// log is watched for errors repeated in a loop.
	quietSeconds = 3
	// serverStoppedText is the error_message of a task that was running
	// when its server stopped (control.serverStopped, SQLSTATE 57P01).
	serverStoppedText = "the server stopped while this task was running"
)

// lanternTrouble matches server log lines that show a process failing or
// exiting; lanternTroubleLines keeps those that mention lanternMention.
var lanternTrouble = regexp.MustCompile(`\b(ERROR|FATAL|PANIC):|exited with exit code|terminated by signal`)

// lanternMention matches "lantern_async" as a word, or as the start of
// lantern_async_go, but not inside the harness's directory names
// (.../lantern_async_test_...), which the standby's walreceiver quotes in
// its errors once the primary is gone.
var lanternMention = regexp.MustCompile(`lantern_async(\b|_go)`)

// severeLine matches any server log line at ERROR level or above.
var severeLine = regexp.MustCompile(`\b(ERROR|FATAL|PANIC):`)

// startPrimary starts a dedicated local cluster with lantern_async created
// in testkit.DBName; it is closed when the test ends (its log tail is logged first
// if the test failed).
func startPrimary(t *testing.T, maxWorkers int) *pgcluster.Cluster {
	t.Helper()
	c, err := pgcluster.Start(testkit.Ctx(t), pgcluster.Options{MaxWorkers: maxWorkers, Logf: t.Logf})
	require.NoError(t, err, "start a primary")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- primary's server log (last %d lines) ---\n%s", testkit.LogTailLines, c.LogTail(testkit.LogTailLines))
		}
		if err := c.Close(); err != nil {
			t.Logf("close the primary: %v", err)
		}
	})
	testkit.MustExec(t, testkit.ConnectTo(t, c, testkit.DBName, testkit.Superuser), "CREATE EXTENSION lantern_async")
	return c
}

// startStandby starts a hot standby of primary and waits until it has
// replayed everything the primary wrote so far.
func startStandby(t *testing.T, primary *pgcluster.Cluster) *pgcluster.Standby {
	t.Helper()
	s, err := primary.StartStandby(testkit.Ctx(t))
	require.NoError(t, err, "start a standby")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- standby's server log (last %d lines) ---\n%s", testkit.LogTailLines, s.LogTail(testkit.LogTailLines))
		}
		if err := s.Close(); err != nil {
			t.Logf("close the standby: %v", err)
		}
	})
	waitCaughtUp(t, s)
	return s
}

// waitCaughtUp waits until the standby has replayed what the primary has
// written so far.
func waitCaughtUp(t *testing.T, s *pgcluster.Standby) {
	t.Helper()
	_, err := s.WaitCaughtUp(testkit.Ctx(t), replayTimeout)
	require.NoError(t, err)
}

// waitStatuses waits until the tasks ids show want (in order) through conn.
func waitStatuses(t *testing.T, conn *pgx.Conn, ids []int64, want []string) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("tasks %v to be %v", ids, want), testkit.WhileConnected(conn, func() (bool, string) {
		st, err := testkit.StatusesOf(conn, ids)
		if err != nil {
			return false, err.Error()
		}
		return fmt.Sprint(st) == fmt.Sprint(want), fmt.Sprintf("statuses %v", st)
	}))
}

// activeRuns counts the sessions other than conn's own that run query.
func activeRuns(t *testing.T, conn *pgx.Conn, query string) int {
	t.Helper()
	return testkit.QueryOne[int](t, conn, `SELECT count(*)::int FROM pg_stat_activity
		WHERE state = 'active' AND query = $1 AND pid <> pg_backend_pid()`, query)
}

// lanternProcesses lists the lantern_async processes connected to a
// database, as "backend_type (datname)".
func lanternProcesses(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	return testkit.QueryAll[string](t, conn, `SELECT backend_type || ' (' || datname || ')' FROM pg_stat_activity
		WHERE backend_type LIKE 'lantern_async%' AND datid IS NOT NULL ORDER BY 1`)
}

// lanternTroubleLines returns the log lines that mention lantern_async and
// show a failure or a process exit.
func lanternTroubleLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if lanternMention.MatchString(l) && lanternTrouble.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// severeLines returns the log lines at ERROR level or above.
func severeLines(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if severeLine.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestStandbyRefusesTasks: on a hot standby, async_task and the cancel
// functions fail with SQLSTATE 25006 (read-only transaction) and change
// nothing, no lantern_async process connects, and nothing lantern_async
// does fills the standby's log while the primary's tasks replicate.
func TestStandbyRefusesTasks(t *testing.T) {
	primary := startPrimary(t, 1)
	psu := testkit.ConnectTo(t, primary, testkit.DBName, testkit.Superuser)
	role := testkit.NewLoginRole(t, psu, "standby_user")
	testkit.MustExec(t, psu, "GRANT USAGE ON SCHEMA lantern TO "+role)

	// One slot, held by a task waiting for our lock: the next task stays
	// pending, so that the standby has a task of each kind to cancel.
	lockConn := testkit.ConnectTo(t, primary, testkit.DBName, testkit.Superuser)
	const lockKey = 7_100_001
	testkit.MustExec(t, lockConn, "SELECT pg_advisory_lock($1)", lockKey)
	running := testkit.Submit(t, psu, fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", lockKey))
	waitStatuses(t, psu, []int64{running}, []string{"running"})
	pending := testkit.Submit(t, psu, "SELECT 1")
	ids := []int64{running, pending}

	standby := startStandby(t, primary)
	ssu := testkit.ConnectTo(t, standby.Cluster, testkit.DBName, testkit.Superuser)
	require.True(t, testkit.QueryOne[bool](t, ssu, "SELECT pg_is_in_recovery()"), "the standby is in recovery")
	waitStatuses(t, ssu, ids, []string{"running", "pending"})

	requireReadOnlyRefusals(t, standby.Cluster, role, running, pending)
	waitStatuses(t, psu, ids, []string{"running", "pending"})
	require.Empty(t, lanternProcesses(t, ssu), "lantern_async processes connected on the standby")

	// Let the primary finish both tasks, then keep the standby replaying
	// for quietSeconds (a server-side sleep on the primary) and watch its log.
	testkit.MustExec(t, lockConn, "SELECT pg_advisory_unlock($1)", lockKey)
	testkit.RequireSucceeded(t, psu, ids...)
	logBefore := len(standby.Log())
	testkit.MustExec(t, psu, fmt.Sprintf("SELECT pg_sleep(%d)", quietSeconds))
	waitCaughtUp(t, standby)
	waitStatuses(t, ssu, ids, []string{"succeeded", "succeeded"})

	log := standby.Log()
	require.Empty(t, severeLines(log[logBefore:]),
		"errors in the standby's log during %d s without any client error", quietSeconds)
	require.Empty(t, lanternTroubleLines(log), "lantern_async failures in the standby's log")
	require.Empty(t, lanternProcesses(t, ssu), "lantern_async processes connected on the standby")
}

// requireReadOnlyRefusals checks what each lantern function does on the
// standby: each refuses at once, naming itself, and its session goes on.
func requireReadOnlyRefusals(t *testing.T, standby *pgcluster.Cluster, role string, running, pending int64) {
	t.Helper()
	for _, user := range []string{testkit.Superuser, role} {
		conn := testkit.ConnectTo(t, standby, testkit.DBName, user)
		var id int64
		err := conn.QueryRow(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1')").Scan(&id)
		requireReadOnlyError(t, err, "lantern.async_task()", "async_task as "+user)
		testkit.RequireSessionUsable(t, conn, "after a refused async_task")
	}

	su := testkit.ConnectTo(t, standby, testkit.DBName, testkit.Superuser)
	_, err := testkit.CancelTask(su, pending)
	requireReadOnlyError(t, err, "lantern.cancel_task()", "cancel_task of a pending task")
	testkit.RequireSessionUsable(t, su, "after a refused cancel_task")

	_, err = su.Exec(testkit.Ctx(t), "SELECT lantern.cancel_all_async_tasks()")
	requireReadOnlyError(t, err, "lantern.cancel_all_async_tasks()", "cancel_all_async_tasks")
	testkit.RequireSessionUsable(t, su, "after a refused cancel_all_async_tasks")

	// A running task runs on the primary, where the standby cannot stop
	// it: cancel_task() says so rather than return false, which would
	// read as "finished or does not exist".
	_, err = testkit.CancelTask(su, running)
	requireReadOnlyError(t, err, "lantern.cancel_task()", "cancel_task of a running task")
	testkit.RequireSessionUsable(t, su, "after cancel_task of a running task")
}

// requireReadOnlyError asserts err is PostgreSQL's error for a write
// during recovery (SQLSTATE 25006) naming the function, with no internal
// query.
func requireReadOnlyError(t *testing.T, err error, function, what string) {
	t.Helper()
	e := testkit.RequirePgError(t, err, "25006", "%s on a standby", what)
	require.Equal(t, "cannot execute "+function+" during recovery", e.Message, "%s on a standby", what)
	require.Empty(t, e.InternalQuery, "%s on a standby: no internal SQL is shown", what)
	t.Logf("%s on the standby: %s", what, testkit.ErrorText(err))
}

// TestFailoverRunsQueuedTasksOnce: after a primary crashes (pg_ctl stop -m
// immediate) and its standby is promoted, the task that was running is
// failed with "the server stopped...", each task that was queued runs
// exactly once as its role, nothing runs twice, and new tasks run.
func TestFailoverRunsQueuedTasksOnce(t *testing.T) {
	// One slot, so that the long task keeps the queued ones pending.
	primary := startPrimary(t, 1)
	psu := testkit.ConnectTo(t, primary, testkit.DBName, testkit.Superuser)
	role := testkit.NewLoginRole(t, psu, "failover_user")
	marker := testkit.Ident(t, testkit.Uniq("failover_marker"))
	testkit.MustExec(t, psu, fmt.Sprintf("CREATE TABLE %s(a int, who text DEFAULT current_user)", marker))
	testkit.MustExec(t, psu, fmt.Sprintf("GRANT INSERT ON %s TO %s", marker, role))
	standby := startStandby(t, primary)

	long := testkit.SleepQuery(600, "failover")
	longID := testkit.Submit(t, psu, long)
	waitRunning(t, psu, longID, long)
	asRole := testkit.ConnectTo(t, primary, testkit.DBName, role)
	var queued []int64
	for i := 1; i <= 3; i++ {
		queued = append(queued, testkit.Submit(t, asRole, testkit.MarkerInsert(marker, i)))
	}
	requireStatuses(t, psu, queued, "pending")

	// Everything the standby needs is committed: once replayed, the
	// primary may crash.
	waitCaughtUp(t, standby)
	ssu := testkit.ConnectTo(t, standby.Cluster, testkit.DBName, testkit.Superuser)
	waitStatuses(t, ssu, append([]int64{longID}, queued...), []string{"running", "pending", "pending", "pending"})
	require.NoError(t, primary.Stop(pgcluster.Immediate))
	started := time.Now()
	require.NoError(t, standby.Promote(testkit.Ctx(t)))
	t.Logf("promoted in %s", time.Since(started).Round(time.Millisecond))

	// ssu was opened during recovery and still works after the promotion.
	newRole := testkit.ConnectTo(t, standby.Cluster, testkit.DBName, role)
	after := testkit.Submit(t, newRole, testkit.MarkerInsert(marker, 4))

	msg := testkit.RequireFailed(t, ssu, longID)
	require.Contains(t, msg, serverStoppedText, "error_message of the task running at the crash")
	require.Equal(t, "57P01", testkit.QueryOne[string](t, ssu,
		"SELECT sqlstate FROM lantern.task_errors WHERE jobid = $1", longID))
	testkit.RequireSucceeded(t, ssu, append(queued, after)...)
	t.Logf("queued tasks done %s after the promotion", time.Since(started).Round(time.Millisecond))

	require.Equal(t, []string{"1 " + role, "2 " + role, "3 " + role, "4 " + role},
		testkit.QueryAll[string](t, ssu, fmt.Sprintf("SELECT a || ' ' || who FROM %s ORDER BY a, who", marker)),
		"each task ran exactly once, as its role")
	require.Zero(t, activeRuns(t, ssu, long), "the task running at the crash must not run again")
	require.Equal(t, "failed", getTaskStatus(t, ssu, longID))
	require.Empty(t, lanternTroubleLines(standby.Log()), "lantern_async failures in the promoted server's log")
}

// waitRunning waits until task id is 'running' and a lantern_async process
// runs its query (unique to the test).
func waitRunning(t *testing.T, su *pgx.Conn, id int64, query string) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("task %d running", id), testkit.WhileConnected(su, func() (bool, string) {
		var status string
		var runs int
		err := su.QueryRow(context.Background(), `
			SELECT coalesce((SELECT status FROM lantern.tasks WHERE jobid = $1), '<none>'),
			       (SELECT count(*)::int FROM pg_stat_activity
			        WHERE backend_type LIKE 'lantern_async%' AND state = 'active' AND query = $2)`,
			id, query).Scan(&status, &runs)
		if err != nil {
			return false, err.Error()
		}
		return status == "running" && runs == 1, fmt.Sprintf("status %q, %d processes running it", status, runs)
	}))
}

// requireStatuses asserts every task of ids has status want, in one snapshot.
func requireStatuses(t *testing.T, conn *pgx.Conn, ids []int64, want string) {
	t.Helper()
	st, err := testkit.StatusesOf(conn, ids)
	require.NoError(t, err)
	for i, s := range st {
		require.Equal(t, want, s, "status of task %d", ids[i])
	}
}

// getTaskStatus reads one task's status ("<none>" without a row).
func getTaskStatus(t *testing.T, conn *pgx.Conn, id int64) string {
	t.Helper()
	return testkit.QueryOne[string](t, conn,
		"SELECT coalesce((SELECT status FROM lantern.tasks WHERE jobid = $1), '<none>')", id)
}
