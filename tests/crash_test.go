package tests

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Crash and restart tests. Each scenario ends with the server up, one
// dispatcher alive (begin's cleanup checks it) and no task left 'running'
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

// crsRole creates a fresh LOGIN role (fresh, so that no task of another test
// is ever queued for it).
func crsRole(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	r := ident(t, uniq(base))
	mustExec(t, su, fmt.Sprintf("CREATE ROLE %s LOGIN", r))
	return r
}

// crsEffects creates the side-effect table, insertable and readable by roles.
func crsEffects(t *testing.T, su *pgx.Conn, roles ...string) string {
	t.Helper()
	tbl := ident(t, uniq("crash_effects"))
	mustExec(t, su, fmt.Sprintf(
		"CREATE TABLE %s(k text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), pid int NOT NULL DEFAULT pg_backend_pid())", tbl))
	for _, r := range roles {
		mustExec(t, su, fmt.Sprintf("GRANT INSERT, SELECT ON %s TO %s", tbl, ident(t, r)))
	}
	return tbl
}

// crsSleeper is a task query that commits the side effect key into tbl, then
// sleeps. key makes the query text unique, so pg_stat_activity.query
// identifies its worker.
func crsSleeper(tbl, key string, seconds int) string {
	return fmt.Sprintf("BEGIN; INSERT INTO %s(k) VALUES (%s); COMMIT; SELECT pg_sleep(%d)", tbl, lit(key), seconds)
}

// crsInsert is a task query that only inserts key into tbl.
func crsInsert(tbl, key string) string {
	return fmt.Sprintf("INSERT INTO %s(k) VALUES (%s)", tbl, lit(key))
}

// crsEffectCounts returns how many times each key was inserted into tbl
// (keys absent from tbl map to 0).
func crsEffectCounts(t *testing.T, su *pgx.Conn, tbl string, keys []string) map[string]int {
	t.Helper()
	rows, err := su.Query(ctx(t), fmt.Sprintf(
		"SELECT k.k, count(e.k)::int FROM unnest($1::text[]) AS k(k) LEFT JOIN %s e ON e.k = k.k GROUP BY k.k", tbl), keys)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		out[k] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// crsRequireEachOnce asserts every key of keys was inserted exactly once.
func crsRequireEachOnce(t *testing.T, su *pgx.Conn, tbl string, keys []string, what string) {
	t.Helper()
	want := map[string]int{}
	for _, k := range keys {
		want[k] = 1
	}
	require.Equal(t, want, crsEffectCounts(t, su, tbl, keys), "%s: side effect of each task, exactly once", what)
}

// crsWaitSleeping waits until every task of ids is 'running', its side
// effect is committed, and a lantern_async worker is active in pg_sleep on
// exactly its query.
func crsWaitSleeping(t *testing.T, su *pgx.Conn, tbl string, ids []int64, queries, keys []string) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("tasks %v running, side effect committed, worker in pg_sleep", ids),
		func() (bool, string) {
			if l, msg := lost(su); l {
				return l, msg
			}
			st, err := statusesOf(su, ids)
			if err != nil {
				return false, err.Error()
			}
			var effects, sleeping int
			if err := su.QueryRow(context.Background(), fmt.Sprintf(
				"SELECT count(*) FROM %s WHERE k = ANY($1)", tbl), keys).Scan(&effects); err != nil {
				return false, err.Error()
			}
			if err := su.QueryRow(context.Background(), `
				SELECT count(*) FROM pg_stat_activity
				WHERE backend_type = $1 AND state = 'active' AND wait_event = 'PgSleep' AND query = ANY($2)`,
				backendWorker, queries).Scan(&sleeping); err != nil {
				return false, err.Error()
			}
			return count(st, "running") == len(ids) && effects == len(keys) && sleeping == len(queries),
				fmt.Sprintf("statuses %v, %d side effects, %d workers in pg_sleep", st, effects, sleeping)
		})
}

// crsWorkerPid returns the pid of the active lantern_async worker whose
// pg_stat_activity.query is query.
func crsWorkerPid(t *testing.T, su *pgx.Conn, query string) int {
	t.Helper()
	rows, err := su.Query(ctx(t), `SELECT pid FROM pg_stat_activity
		WHERE backend_type = $1 AND state = 'active' AND query = $2`, backendWorker, query)
	require.NoError(t, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Len(t, pids, 1, "exactly one worker runs %q", query)
	return int(pids[0])
}

// crsDispatcherPid returns the pid of the one dispatcher.
func crsDispatcherPid(t *testing.T, su *pgx.Conn) int {
	t.Helper()
	rows, err := su.Query(ctx(t), "SELECT pid FROM pg_stat_activity WHERE backend_type = $1", backendDispatcher)
	require.NoError(t, err)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Len(t, pids, 1, "exactly one %s", backendDispatcher)
	return int(pids[0])
}

// crsWaitRecovered waits, reconnecting as needed, until the server accepts
// connections again and exactly one dispatcher runs whose pid is not
// oldDispatcher (all backends are replaced by a crash restart). Waiting
// only for "one dispatcher" could see the old one before the postmaster
// noticed the crash.
func crsWaitRecovered(t *testing.T, oldDispatcher int) {
	t.Helper()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	requirePoll(t, crashRecoveryTimeout, "crash restart: a new dispatcher", func() (bool, string) {
		if conn == nil || conn.IsClosed() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var err error
			if conn, err = cluster.Connect(c, dbName, superuser); err != nil {
				conn = nil
				return false, err.Error()
			}
		}
		rows, err := conn.Query(context.Background(),
			"SELECT pid FROM pg_stat_activity WHERE backend_type = $1", backendDispatcher)
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			return false, err.Error()
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			return false, err.Error()
		}
		return len(pids) == 1 && int(pids[0]) != oldDispatcher,
			fmt.Sprintf("dispatcher pids %v (old %d)", pids, oldDispatcher)
	})
}

// crsOrphans lists the 'running' tasks that no active lantern_async worker
// is running (pg_stat_activity.query = tasks.query).
func crsOrphans(conn *pgx.Conn) ([]int64, error) {
	rows, err := conn.Query(context.Background(), `
		SELECT t.jobid FROM lantern.tasks t
		WHERE t.status = 'running'
		  AND NOT EXISTS (SELECT FROM pg_stat_activity a
		                  WHERE a.backend_type = $1 AND a.state = 'active' AND a.query = t.query)
		ORDER BY t.jobid`, backendWorker)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// crsRequireNoOrphans waits until every 'running' row has a live worker (a
// freshly claimed task is 'running' a moment before its worker reports the
// query, hence the wait).
func crsRequireNoOrphans(t *testing.T, su *pgx.Conn) {
	t.Helper()
	requirePoll(t, waitTimeout, "no 'running' task without an active worker", func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		ids, err := crsOrphans(su)
		if err != nil {
			return false, err.Error()
		}
		return len(ids) == 0, fmt.Sprintf("'running' without a worker: %v", ids)
	})
}

// crsRequireFailedWith waits for the task and asserts it failed with an
// error_message starting with prefix and SQLSTATE 57P01.
func crsRequireFailedWith(t *testing.T, su *pgx.Conn, id int64, prefix string) {
	t.Helper()
	status, msg := waitTask(t, su, id)
	require.Equal(t, "failed", status, "task %d (error_message %q)", id, msg)
	require.True(t, strings.HasPrefix(msg, prefix), "task %d error_message:\n%s\nwant prefix:\n%s", id, msg, prefix)
	require.Equal(t, "57P01", taskSQLState(t, id), "task %d lantern.task_errors.sqlstate", id)
}

func crsSkipDocker(t *testing.T) {
	t.Helper()
	if cluster.Backend() == pgcluster.BackendDocker {
		t.Skip("needs to restart the server and signal its processes: local backend only")
	}
}

// TestCrashRestartWithRunningAndQueued extends TestRestart: every worker runs
// a task that has committed a side effect, more tasks are queued, then the
// server is restarted. The interrupted tasks end 'failed' ("the server
// stopped ..."), none of them runs again, the queued ones each run exactly
// once afterwards, and nothing stays 'running'.
func TestCrashRestartWithRunningAndQueued(t *testing.T) {
	crsSkipDocker(t)
	for _, mode := range []pgcluster.StopMode{pgcluster.Fast, pgcluster.Immediate} {
		t.Run(string(mode), func(t *testing.T) {
			begin(t)
			su := connect(t, superuser)
			roleA, roleB := crsRole(t, su, "crash_a"), crsRole(t, su, "crash_b")
			tbl := crsEffects(t, su, roleA, roleB)
			a, b := connect(t, roleA), connect(t, roleB)

			// Two roles, two sleepers each: all max_workers workers busy.
			require.Equal(t, 4, cluster.MaxWorkers())
			var sleepers []int64
			var sleeperQ, sleeperK []string
			for i, conn := range []*pgx.Conn{a, b, a, b} {
				k := fmt.Sprintf("running_%s_%d", mode, i)
				q := crsSleeper(tbl, k, 60)
				sleepers = append(sleepers, submit(t, conn, q))
				sleeperQ, sleeperK = append(sleeperQ, q), append(sleeperK, k)
			}
			crsWaitSleeping(t, su, tbl, sleepers, sleeperQ, sleeperK)

			var queued []int64
			var queuedK []string
			for i, conn := range []*pgx.Conn{a, b, a} {
				k := fmt.Sprintf("queued_%s_%d", mode, i)
				queued = append(queued, submit(t, conn, crsInsert(tbl, k)))
				queuedK = append(queuedK, k)
			}
			st, err := statusesOf(su, queued)
			require.NoError(t, err)
			require.Equal(t, []string{"pending", "pending", "pending"}, st, "all workers are busy")

			require.NoError(t, cluster.Restart(mode), "restart -m %s", mode)
			requireHealthy(t)
			su = connect(t, superuser)

			for _, id := range queued {
				requireSucceeded(t, su, id)
			}
			for _, id := range sleepers {
				crsRequireFailedWith(t, su, id, msgServerStopped)
			}
			crsRequireEachOnce(t, su, tbl, sleeperK, "interrupted tasks (not re-run after the restart)")
			crsRequireEachOnce(t, su, tbl, queuedK, "queued tasks (run after the restart)")
			crsRequireNoOrphans(t, su)

			// The roles' queues work as before.
			after := submit(t, connect(t, roleA), crsInsert(tbl, "after_"+string(mode)))
			requireSucceeded(t, su, after)
			crsRequireEachOnce(t, su, tbl, append(append(sleeperK, queuedK...), "after_"+string(mode)), "all tasks")
		})
	}
}

// TestCrashKillWorker sends SIGKILL to the worker running a task: the
// postmaster restarts every backend (crash recovery). The task ends
// 'failed' with "the server stopped ...", is not run again, nothing stays
// 'running', and the queue works afterwards.
func TestCrashKillWorker(t *testing.T) {
	crsSkipDocker(t)
	begin(t)
	su := connect(t, superuser)
	role := crsRole(t, su, "crash_kill")
	tbl := crsEffects(t, su, role)
	conn := connect(t, role)

	q := crsSleeper(tbl, "killed", 60)
	id := submit(t, conn, q)
	crsWaitSleeping(t, su, tbl, []int64{id}, []string{q}, []string{"killed"})
	pid := crsWorkerPid(t, su, q)
	dispatcher := crsDispatcherPid(t, su)
	logBefore := len(cluster.Log())

	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL), "kill -9 %d", pid)
	crsWaitRecovered(t, dispatcher)
	require.Contains(t, cluster.Log()[logBefore:], fmt.Sprintf("(PID %d) was terminated by signal 9", pid),
		"the postmaster saw the worker die")

	su = connect(t, superuser)
	conn = connect(t, role)
	crsRequireFailedWith(t, su, id, msgServerStopped)
	status, msg := waitTask(t, conn, id)
	require.Equal(t, "failed", status, "the role sees its task failed too")
	require.True(t, strings.HasPrefix(msg, msgServerStopped), msg)
	crsRequireNoOrphans(t, su)
	crsRequireEachOnce(t, su, tbl, []string{"killed"}, "killed task (not re-run after crash recovery)")

	after := submit(t, conn, crsInsert(tbl, "after_kill"))
	requireSucceeded(t, conn, after)
	crsRequireEachOnce(t, su, tbl, []string{"killed", "after_kill"}, "all tasks")
	crsRequireNoOrphans(t, su)
}

// TestCrashKillDispatcher sends SIGKILL to the dispatcher while every worker
// is busy and tasks are queued: after crash recovery the running tasks are
// 'failed' (not re-run) and the queued ones run, each once.
func TestCrashKillDispatcher(t *testing.T) {
	crsSkipDocker(t)
	begin(t)
	su := connect(t, superuser)
	roleA, roleB := crsRole(t, su, "crash_disp_a"), crsRole(t, su, "crash_disp_b")
	tbl := crsEffects(t, su, roleA, roleB)
	a, b := connect(t, roleA), connect(t, roleB)

	var sleepers []int64
	var sleeperQ, sleeperK []string
	for i, conn := range []*pgx.Conn{a, b, a, b} {
		k := fmt.Sprintf("running_%d", i)
		q := crsSleeper(tbl, k, 60)
		sleepers = append(sleepers, submit(t, conn, q))
		sleeperQ, sleeperK = append(sleeperQ, q), append(sleeperK, k)
	}
	crsWaitSleeping(t, su, tbl, sleepers, sleeperQ, sleeperK)
	var queued []int64
	var queuedK []string
	for i, conn := range []*pgx.Conn{b, a, b, a} {
		k := fmt.Sprintf("queued_%d", i)
		queued = append(queued, submit(t, conn, crsInsert(tbl, k)))
		queuedK = append(queuedK, k)
	}
	st, err := statusesOf(su, queued)
	require.NoError(t, err)
	require.Equal(t, []string{"pending", "pending", "pending", "pending"}, st, "all workers are busy")

	dispatcher := crsDispatcherPid(t, su)
	logBefore := len(cluster.Log())
	require.NoError(t, syscall.Kill(dispatcher, syscall.SIGKILL), "kill -9 dispatcher %d", dispatcher)
	crsWaitRecovered(t, dispatcher)
	require.Contains(t, cluster.Log()[logBefore:], fmt.Sprintf("(PID %d) was terminated by signal 9", dispatcher),
		"the postmaster saw the dispatcher die")

	su = connect(t, superuser)
	for _, id := range queued {
		requireSucceeded(t, su, id)
	}
	for _, id := range sleepers {
		crsRequireFailedWith(t, su, id, msgServerStopped)
	}
	crsRequireEachOnce(t, su, tbl, append(sleeperK, queuedK...), "running tasks not re-run, queued tasks run once")
	crsRequireNoOrphans(t, su)

	after := submit(t, connect(t, roleB), crsInsert(tbl, "after"))
	requireSucceeded(t, su, after)
}

// TestTaskTerminatesOwnProcess: a task that ends its own process with
// pg_terminate_backend(pg_backend_pid()) is 'failed' ("the process running
// this task exited ..."); a task of another role running at the same time
// is unaffected, the dispatcher keeps running (same pid: no crash restart),
// and the role's next task runs.
func TestTaskTerminatesOwnProcess(t *testing.T) {
	crsSkipDocker(t)
	begin(t)
	su := connect(t, superuser)
	lockConn := connect(t, superuser)
	roleA, roleB := crsRole(t, su, "selfkill_a"), crsRole(t, su, "selfkill_b")
	tbl := crsEffects(t, su, roleA, roleB)
	a, b := connect(t, roleA), connect(t, roleB)
	dispatcher := crsDispatcherPid(t, su)
	logBefore := len(cluster.Log())

	// B's task runs for as long as the test holds the advisory lock: it is
	// running for the whole life of A's task.
	key := 9_000_000 + nameCounter.Add(1)
	mustExec(t, lockConn, "SELECT pg_advisory_lock($1)", key)
	bID := submit(t, b, fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d); INSERT INTO %s(k) VALUES ('bystander')", key, tbl))
	waitBlocked(t, su, []int64{bID}, key)
	bPid := crsWorkerPid(t, su, getTask(t, su, bID).Query)

	selfKill := fmt.Sprintf("BEGIN; INSERT INTO %s(k) VALUES ('selfkill'); COMMIT; SELECT pg_terminate_backend(pg_backend_pid())", tbl)
	aID := submit(t, a, selfKill)
	next := submit(t, a, crsInsert(tbl, "next"))

	crsRequireFailedWith(t, su, aID, msgWorkerExited)
	require.Equal(t, "running", deref(getTask(t, su, bID).Status), "the other role's task is still running")
	require.Equal(t, bPid, crsWorkerPid(t, su, getTask(t, su, bID).Query), "the other task's worker was not restarted")
	requireSucceeded(t, a, next)

	mustExec(t, lockConn, "SELECT pg_advisory_unlock($1)", key)
	requireSucceeded(t, b, bID)

	require.Equal(t, dispatcher, crsDispatcherPid(t, su), "the dispatcher survived (no crash restart)")
	require.NotContains(t, cluster.Log()[logBefore:], "terminated by signal", "no process crashed")
	crsRequireEachOnce(t, su, tbl, []string{"selfkill", "bystander", "next"}, "tasks")
	crsRequireNoOrphans(t, su)
}

// TestTaskProcessTerminatedBySameRole: another way a normal role reaches
// FATAL in a worker: pg_terminate_backend() of its own running task's
// process, from one of its client sessions or from another of its tasks
// (PostgreSQL lets a role signal the backends of its own role). The task is
// 'failed' as a lost worker, not re-run, and nothing crashes.
func TestTaskProcessTerminatedBySameRole(t *testing.T) {
	crsSkipDocker(t)
	for _, from := range []string{"client session", "another task"} {
		t.Run(from, func(t *testing.T) {
			begin(t)
			su := connect(t, superuser)
			role := crsRole(t, su, "termrole")
			tbl := crsEffects(t, su, role)
			conn := connect(t, role)
			dispatcher := crsDispatcherPid(t, su)
			logBefore := len(cluster.Log())

			q := crsSleeper(tbl, "victim", 60)
			victim := submit(t, conn, q)
			crsWaitSleeping(t, su, tbl, []int64{victim}, []string{q}, []string{"victim"})
			pid := crsWorkerPid(t, su, q)

			if from == "client session" {
				require.True(t, queryOne[bool](t, conn, "SELECT pg_terminate_backend($1)", pid))
			} else {
				killer := submit(t, conn, fmt.Sprintf(
					"DO $$BEGIN IF NOT pg_terminate_backend(%d) THEN RAISE EXCEPTION 'not signalled'; END IF; END$$", pid))
				requireSucceeded(t, conn, killer)
			}
			crsRequireFailedWith(t, su, victim, msgWorkerExited)
			crsRequireEachOnce(t, su, tbl, []string{"victim"}, "terminated task (not re-run)")
			crsRequireNoOrphans(t, su)

			next := submit(t, conn, crsInsert(tbl, "next"))
			requireSucceeded(t, conn, next)
			require.Equal(t, dispatcher, crsDispatcherPid(t, su), "the dispatcher survived (no crash restart)")
			require.NotContains(t, cluster.Log()[logBefore:], "terminated by signal", "no process crashed")
		})
	}
}
