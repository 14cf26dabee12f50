package durability

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Crash and restart tests. Each scenario ends with the server up, one
// launcher alive (begin's cleanup checks it) and no task left 'running'
// without a live worker process.
//
// "Not run twice" is detected with a side effect that a task commits before
// it starts sleeping: the task's query is
//
//	BEGIN; INSERT INTO <effects>(k) VALUES ('<unique key>'); COMMIT; SELECT pg_sleep(n)
//
// A re-run would insert the key a second time. A sequence (nextval) is not
// used for this: an uncommitted nextval is WAL-logged 32 values ahead and
// its WAL record need not be flushed, so after crash recovery last_value
// can be ahead of, or behind, the number of calls; a committed row is exact.

const (
	msgServerStopped = "ERROR:  the server stopped while this task was running"
	msgWorkerExited  = "ERROR:  the process running this task exited before the task finished"
	// crashRecoveryTimeout bounds the wait for a crash restart.
	crashRecoveryTimeout = 60 * time.Second
)

// effectsTable creates the side-effect table, insertable and readable by roles.
func effectsTable(t *testing.T, su *pgx.Conn, roles ...string) string {
	t.Helper()
	tbl := testkit.Ident(t, testkit.Uniq("crash_effects"))
	testkit.MustExec(t, su, fmt.Sprintf(
		"CREATE TABLE %s(k text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), pid int NOT NULL DEFAULT pg_backend_pid())", tbl))
	for _, r := range roles {
		testkit.MustExec(t, su, fmt.Sprintf("GRANT INSERT, SELECT ON %s TO %s", tbl, testkit.Ident(t, r)))
	}
	return tbl
}

// effectInsert is a task query that only inserts key into tbl.
func effectInsert(tbl, key string) string {
	return fmt.Sprintf("INSERT INTO %s(k) VALUES (%s)", tbl, testkit.Lit(key))
}

// effectTasks are tasks that each insert their own key into the
// side-effect table.
type effectTasks struct {
	ids     []int64
	keys    []string
	queries []string
}

// submitEffects submits through each of conns the task query(key) with
// the key prefix_0, prefix_1, ...
func submitEffects(t *testing.T, prefix string, query func(key string) string, conns ...*pgx.Conn) effectTasks {
	t.Helper()
	var ts effectTasks
	for i, conn := range conns {
		k := fmt.Sprintf("%s_%d", prefix, i)
		q := query(k)
		ts.ids = append(ts.ids, testkit.Submit(t, conn, q))
		ts.keys, ts.queries = append(ts.keys, k), append(ts.queries, q)
	}
	return ts
}

// startSleepers submits through each of conns a task that commits its side
// effect into tbl, then sleeps (see submitEffects for the keys; a key makes
// the query text unique, so pg_stat_activity.query identifies its worker).
// It waits until every task is 'running', its side effect is committed, and
// a lantern_async worker is active in pg_sleep on exactly its query.
func startSleepers(t *testing.T, su *pgx.Conn, tbl, prefix string, conns ...*pgx.Conn) effectTasks {
	t.Helper()
	ts := submitEffects(t, prefix, func(key string) string {
		return fmt.Sprintf("BEGIN; INSERT INTO %s(k) VALUES (%s); COMMIT; SELECT pg_sleep(60)", tbl, testkit.Lit(key))
	}, conns...)
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("tasks %v running, side effect committed, worker in pg_sleep", ts.ids),
		testkit.WhileConnected(su, func() (bool, string) {
			st, err := testkit.StatusesOf(su, ts.ids)
			if err != nil {
				return false, err.Error()
			}
			var effects, sleeping int
			if err := su.QueryRow(context.Background(), fmt.Sprintf(
				"SELECT count(*) FROM %s WHERE k = ANY($1)", tbl), ts.keys).Scan(&effects); err != nil {
				return false, err.Error()
			}
			if err := su.QueryRow(context.Background(), `
				SELECT count(*) FROM pg_stat_activity
				WHERE backend_type = $1 AND state = 'active' AND wait_event = 'PgSleep' AND query = ANY($2)`,
				testkit.BackendWorker, ts.queries).Scan(&sleeping); err != nil {
				return false, err.Error()
			}
			return testkit.CountStatus(st, "running") == len(ts.ids) && effects == len(ts.keys) && sleeping == len(ts.queries),
				fmt.Sprintf("statuses %v, %d side effects, %d workers in pg_sleep", st, effects, sleeping)
		}))
	return ts
}

// queueInserts submits through each of conns a task that inserts its key
// into tbl (see submitEffects), and asserts that all of them are pending
// because every worker is busy.
func queueInserts(t *testing.T, su *pgx.Conn, tbl, prefix string, conns ...*pgx.Conn) effectTasks {
	t.Helper()
	ts := submitEffects(t, prefix, func(key string) string { return effectInsert(tbl, key) }, conns...)
	st, err := testkit.StatusesOf(su, ts.ids)
	require.NoError(t, err)
	require.Equal(t, slices.Repeat([]string{"pending"}, len(ts.ids)), st, "all workers are busy")
	return ts
}

// requireEachEffectOnce asserts every key of keys was inserted into tbl
// exactly once.
func requireEachEffectOnce(t *testing.T, su *pgx.Conn, tbl string, keys []string, what string) {
	t.Helper()
	rows, err := su.Query(testkit.Ctx(t), fmt.Sprintf(
		"SELECT k.k, count(e.k)::int FROM unnest($1::text[]) AS k(k) LEFT JOIN %s e ON e.k = k.k GROUP BY k.k", tbl), keys)
	require.NoError(t, err)
	got := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		got[k] = n
	}
	require.NoError(t, rows.Err())
	want := map[string]int{}
	for _, k := range keys {
		want[k] = 1
	}
	require.Equal(t, want, got, "%s: side effect of each task, exactly once", what)
}

// requireKilled waits for the task and asserts it failed because its
// process went away: an error_message starting with prefix and SQLSTATE
// 57P01.
func requireKilled(t *testing.T, su *pgx.Conn, id int64, prefix string) {
	t.Helper()
	msg := testkit.RequireFailedWithSQLState(t, su, id, "57P01")
	require.True(t, strings.HasPrefix(msg, prefix), "task %d error_message:\n%s\nwant prefix:\n%s", id, msg, prefix)
}

// requireRestartOutcome asserts what a restart of the server (or a crash
// restart) with every worker busy and more tasks queued must lead to: the
// queued tasks run, each once; the interrupted ones end 'failed' ("the
// server stopped ...") and are not run again; nothing stays 'running'.
func requireRestartOutcome(t *testing.T, su *pgx.Conn, tbl string, interrupted, queued effectTasks) {
	t.Helper()
	testkit.RequireSucceeded(t, su, queued.ids...)
	for _, id := range interrupted.ids {
		requireKilled(t, su, id, msgServerStopped)
	}
	requireEachEffectOnce(t, su, tbl, interrupted.keys, "interrupted tasks (not re-run after the restart)")
	requireEachEffectOnce(t, su, tbl, queued.keys, "queued tasks (run after the restart)")
	testkit.RequireNoOrphans(t, su)
}

// killAndWaitRecovered sends SIGKILL to pid (a process of kind what) and
// waits for the crash restart that follows; the postmaster must have seen
// the process die.
func killAndWaitRecovered(t *testing.T, su *pgx.Conn, pid int, what string) {
	t.Helper()
	launcher := testkit.LauncherPid(t, su)
	logBefore := len(testkit.Cluster.Log())
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL), "kill -9 %s %d", what, pid)
	waitCrashRecovered(t, launcher)
	require.Contains(t, testkit.Cluster.Log()[logBefore:], fmt.Sprintf("(PID %d) was terminated by signal 9", pid),
		"the postmaster saw the %s die", what)
}

// waitCrashRecovered waits, reconnecting as needed, until the server
// accepts connections again and exactly one launcher runs whose pid is
// not oldLauncher (all backends are replaced by a crash restart). Waiting
// only for "one launcher" could see the old one before the postmaster
// noticed the crash.
func waitCrashRecovered(t *testing.T, oldLauncher int) {
	t.Helper()
	cond, closeConn := testkit.Reconnecting(func(conn *pgx.Conn) (bool, string, error) {
		pids, err := testkit.BackendPids(conn, testkit.BackendLauncher)
		return len(pids) == 1 && pids[0] != oldLauncher,
			fmt.Sprintf("launcher pids %v (old %d)", pids, oldLauncher), err
	})
	defer closeConn()
	testkit.RequirePoll(t, crashRecoveryTimeout, "crash restart: a new.launcher", cond)
}

// crashWatch is taken before something that must not crash any process.
type crashWatch struct {
	launcher int
	logLen   int
}

func watchCrashes(t *testing.T, su *pgx.Conn) crashWatch {
	t.Helper()
	return crashWatch{launcher: testkit.LauncherPid(t, su), logLen: len(testkit.Cluster.Log())}
}

// requireNoCrash asserts the launcher is the same process (no crash
// restart) and no process was terminated by a signal since the watch began.
func (w crashWatch) requireNoCrash(t *testing.T, su *pgx.Conn) {
	t.Helper()
	require.Equal(t, w.launcher, testkit.LauncherPid(t, su), "the launcher survived (no crash restart)")
	require.NotContains(t, testkit.Cluster.Log()[w.logLen:], "terminated by signal", "no process crashed")
}

// TestCrashRestartWithRunningAndQueued extends TestRestart: every worker runs
// a task that has committed a side effect, more tasks are queued, then the
// server is restarted. The interrupted tasks end 'failed' ("the server
// stopped ..."), none of them runs again, the queued ones each run exactly
// once afterwards, and nothing stays 'running'.
func TestCrashRestartWithRunningAndQueued(t *testing.T) {
	for _, mode := range []pgcluster.StopMode{pgcluster.Fast, pgcluster.Immediate} {
		t.Run(string(mode), func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			roleA, roleB := testkit.NewLoginRole(t, su, "crash_a"), testkit.NewLoginRole(t, su, "crash_b")
			tbl := effectsTable(t, su, roleA, roleB)
			a, b := testkit.Connect(t, roleA), testkit.Connect(t, roleB)

			// Two roles, two sleepers each: all max_workers workers busy.
			require.Equal(t, 4, testkit.Cluster.MaxWorkers())
			sleepers := startSleepers(t, su, tbl, "running_"+string(mode), a, b, a, b)
			queued := queueInserts(t, su, tbl, "queued_"+string(mode), a, b, a)

			require.NoError(t, testkit.Cluster.Restart(mode), "restart -m %s", mode)
			testkit.RequireHealthy(t)
			su = testkit.Connect(t, testkit.Superuser)
			requireRestartOutcome(t, su, tbl, sleepers, queued)

			// The roles' queues work as before.
			after := testkit.Submit(t, testkit.Connect(t, roleA), effectInsert(tbl, "after_"+string(mode)))
			testkit.RequireSucceeded(t, su, after)
			requireEachEffectOnce(t, su, tbl, slices.Concat(sleepers.keys, queued.keys, []string{"after_" + string(mode)}), "all tasks")
		})
	}
}

// TestCrashKillWorker sends SIGKILL to the worker running a task: the
// postmaster restarts every backend (crash recovery). The task ends
// 'failed' with "the server stopped ...", is not run again, nothing stays
// 'running', and the queue works afterwards.
func TestCrashKillWorker(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewLoginRole(t, su, "crash_kill")
	tbl := effectsTable(t, su, role)
	conn := testkit.Connect(t, role)

	killed := startSleepers(t, su, tbl, "killed", conn)
	id := killed.ids[0]
	killAndWaitRecovered(t, su, testkit.WorkerPid(t, su, killed.queries[0]), "worker")

	su = testkit.Connect(t, testkit.Superuser)
	conn = testkit.Connect(t, role)
	requireKilled(t, su, id, msgServerStopped)
	status, msg := testkit.WaitTask(t, conn, id)
	require.Equal(t, "failed", status, "the role sees its task failed too")
	require.True(t, strings.HasPrefix(msg, msgServerStopped), msg)
	testkit.RequireNoOrphans(t, su)
	requireEachEffectOnce(t, su, tbl, killed.keys, "killed task (not re-run after crash recovery)")

	after := testkit.Submit(t, conn, effectInsert(tbl, "after_kill"))
	testkit.RequireSucceeded(t, conn, after)
	requireEachEffectOnce(t, su, tbl, append(killed.keys, "after_kill"), "all tasks")
	testkit.RequireNoOrphans(t, su)
}

// TestCrashKillLauncher sends SIGKILL to the launcher while every worker
// is busy and tasks are queued: after crash recovery the running tasks are
// 'failed' (not re-run) and the queued ones run, each once.
func TestCrashKillLauncher(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	roleA, roleB := testkit.NewLoginRole(t, su, "crash_disp_a"), testkit.NewLoginRole(t, su, "crash_disp_b")
	tbl := effectsTable(t, su, roleA, roleB)
	a, b := testkit.Connect(t, roleA), testkit.Connect(t, roleB)

	sleepers := startSleepers(t, su, tbl, "running", a, b, a, b)
	queued := queueInserts(t, su, tbl, "queued", b, a, b, a)

	killAndWaitRecovered(t, su, testkit.LauncherPid(t, su), "launcher")

	su = testkit.Connect(t, testkit.Superuser)
	requireRestartOutcome(t, su, tbl, sleepers, queued)

	after := testkit.Submit(t, testkit.Connect(t, roleB), effectInsert(tbl, "after"))
	testkit.RequireSucceeded(t, su, after)
}

// TestTaskTerminatesOwnProcess: a task that ends its own process with
// pg_terminate_backend(pg_backend_pid()) is 'failed' ("the process running
// this task exited ..."); a task of another role running at the same time
// is unaffected, the launcher keeps running (same pid: no crash restart),
// and the role's next task runs.
func TestTaskTerminatesOwnProcess(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	roleA, roleB := testkit.NewLoginRole(t, su, "selfkill_a"), testkit.NewLoginRole(t, su, "selfkill_b")
	tbl := effectsTable(t, su, roleA, roleB)
	a, b := testkit.Connect(t, roleA), testkit.Connect(t, roleB)
	watch := watchCrashes(t, su)

	// B's task runs for as long as the test holds the advisory lock: it is
	// running for the whole life of A's task.
	lock := testkit.HoldAdvisoryLock(t)
	bID := testkit.Submit(t, b, fmt.Sprintf("%s; INSERT INTO %s(k) VALUES ('bystander')", lock.WaitSQL(), tbl))
	lock.WaitBlocked(t, su, []int64{bID})
	bPid := testkit.WorkerPid(t, su, testkit.GetTask(t, su, bID).Query)

	selfKill := fmt.Sprintf("BEGIN; INSERT INTO %s(k) VALUES ('selfkill'); COMMIT; SELECT pg_terminate_backend(pg_backend_pid())", tbl)
	aID := testkit.Submit(t, a, selfKill)
	next := testkit.Submit(t, a, effectInsert(tbl, "next"))

	requireKilled(t, su, aID, msgWorkerExited)
	require.Equal(t, "running", testkit.Deref(testkit.GetTask(t, su, bID).Status), "the other role's task is still running")
	require.Equal(t, bPid, testkit.WorkerPid(t, su, testkit.GetTask(t, su, bID).Query), "the other task's worker was not restarted")
	testkit.RequireSucceeded(t, a, next)

	lock.Release(t)
	testkit.RequireSucceeded(t, b, bID)

	watch.requireNoCrash(t, su)
	requireEachEffectOnce(t, su, tbl, []string{"selfkill", "bystander", "next"}, "tasks")
	testkit.RequireNoOrphans(t, su)
}

// TestTaskProcessTerminatedBySameRole: another way a normal role reaches
// FATAL in a worker: pg_terminate_backend() of its own running task's
// process, from one of its client sessions or from another of its tasks
// (PostgreSQL lets a role signal the backends of its own role). The task is
// 'failed' as a lost worker, not re-run, and nothing crashes.
func TestTaskProcessTerminatedBySameRole(t *testing.T) {
	for _, from := range []string{"client session", "another task"} {
		t.Run(from, func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			role := testkit.NewLoginRole(t, su, "termrole")
			tbl := effectsTable(t, su, role)
			conn := testkit.Connect(t, role)
			watch := watchCrashes(t, su)

			victim := startSleepers(t, su, tbl, "victim", conn)
			pid := testkit.WorkerPid(t, su, victim.queries[0])

			if from == "client session" {
				require.True(t, testkit.QueryOne[bool](t, conn, "SELECT pg_terminate_backend($1)", pid))
			} else {
				killer := testkit.Submit(t, conn, fmt.Sprintf(
					"DO $$BEGIN IF NOT pg_terminate_backend(%d) THEN RAISE EXCEPTION 'not signalled'; END IF; END$$", pid))
				testkit.RequireSucceeded(t, conn, killer)
			}
			requireKilled(t, su, victim.ids[0], msgWorkerExited)
			requireEachEffectOnce(t, su, tbl, victim.keys, "terminated task (not re-run)")
			testkit.RequireNoOrphans(t, su)

			next := testkit.Submit(t, conn, effectInsert(tbl, "next"))
			testkit.RequireSucceeded(t, conn, next)
			watch.requireNoCrash(t, su)
		})
	}
}
