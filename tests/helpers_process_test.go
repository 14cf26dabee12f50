package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Server processes (launcher, workers, running tasks) and the advisory
// locks that keep workers busy.

// backendPids lists the pids of the processes of a backend_type.
func backendPids(conn *pgx.Conn, backendType string) ([]int, error) {
	return queryRows[int](conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1", backendType)
}

// countBackends counts pg_stat_activity rows of a backend_type.
func countBackends(conn *pgx.Conn, backendType string) (int, error) {
	pids, err := backendPids(conn, backendType)
	return len(pids), err
}

// launcherPid returns the pid of the one launcher.
func launcherPid(t *testing.T, su *pgx.Conn) int {
	t.Helper()
	pids, err := backendPids(su, backendLauncher)
	require.NoError(t, err)
	require.Len(t, pids, 1, "exactly one %s", backendLauncher)
	return pids[0]
}

// waitWorkerCount waits until exactly want worker processes exist.
func waitWorkerCount(t *testing.T, su *pgx.Conn, want int, what string) {
	t.Helper()
	requirePoll(t, waitTimeout, what, whileConnected(su, func() (bool, string) {
		n, err := countBackends(su, backendWorker)
		return err == nil && n == want, fmt.Sprintf("%d workers, err=%v", n, err)
	}))
}

// activeWorkerPids lists the lantern_async workers that show query as
// 'active' in pg_stat_activity.
func activeWorkerPids(conn *pgx.Conn, query string) ([]int, error) {
	return queryRows[int](conn, `
		SELECT pid FROM pg_stat_activity
		WHERE backend_type = $1 AND state = 'active' AND query = $2`, backendWorker, query)
}

// workerPid returns the pid of the one active lantern_async worker whose
// pg_stat_activity.query is query.
func workerPid(t *testing.T, su *pgx.Conn, query string) int {
	t.Helper()
	pids, err := activeWorkerPids(su, query)
	require.NoError(t, err)
	require.Len(t, pids, 1, "exactly one worker runs %q", query)
	return pids[0]
}

// sleepQuery is a long query text unique to this test run, so that its
// pg_stat_activity row can be told apart.
func sleepQuery(seconds int, tag string) string {
	return fmt.Sprintf("SELECT pg_sleep(%d) /* %s */", seconds, uniq(tag))
}

// runningTask is a task a lantern_async worker is running.
type runningTask struct {
	id    int64
	query string
	pid   int // of the worker
}

// startTask submits query (a text unique to the test run, see sleepQuery)
// through conn and waits until the task is 'running' and a lantern_async
// worker shows its query as 'active' in pg_stat_activity.
func startTask(t *testing.T, su, conn *pgx.Conn, query string) runningTask {
	t.Helper()
	rt := runningTask{id: submit(t, conn, query), query: query}
	requirePoll(t, waitTimeout, fmt.Sprintf("task %d running in a %s", rt.id, backendWorker), whileConnected(su, func() (bool, string) {
		var st *string
		if err := su.QueryRow(context.Background(),
			"SELECT status FROM lantern.tasks WHERE jobid = $1", rt.id).Scan(&st); err != nil {
			return false, "read task: " + err.Error()
		}
		pids, err := activeWorkerPids(su, query)
		if err != nil {
			return false, err.Error()
		}
		if deref(st) == "running" && len(pids) == 1 {
			rt.pid = pids[0]
			return true, ""
		}
		return false, fmt.Sprintf("status=%q, active worker pids with the query: %v", deref(st), pids)
	}))
	// A test that fails half-way must not leave a long sleeper behind.
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cluster.Exec(c, dbName, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND query = $2`, rt.pid, query)
	})
	return rt
}

// waitIdleWorker waits until role has exactly one worker and it waits
// idle for more tasks (on its latch: wait_event Extension).
func waitIdleWorker(t *testing.T, su *pgx.Conn, role string) {
	t.Helper()
	requirePoll(t, waitTimeout, "a worker of "+role+" waiting idle", whileConnected(su, func() (bool, string) {
		evs, err := queryRows[string](su, `SELECT coalesce(wait_event, '<none>') FROM pg_stat_activity
			WHERE backend_type = $1 AND usename = $2`, backendWorker, role)
		if err != nil {
			return false, err.Error()
		}
		return len(evs) == 1 && evs[0] == "Extension", fmt.Sprintf("wait events of its workers: %v", evs)
	}))
}

// cancelBound is how soon a canceled task's worker must stop running it:
// the cancel is a signal, at once, and the tasks canceled in the tests
// run for a minute when it is lost; the rest is a loaded machine.
const cancelBound = 5 * time.Second

// stillRunning reports whether rt's worker still shows rt's query as 'active'.
func stillRunning(conn *pgx.Conn, rt runningTask) (bool, error) {
	var n int
	err := conn.QueryRow(context.Background(),
		"SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = $2",
		rt.pid, rt.query).Scan(&n)
	return n > 0, err
}

// stoppedRunning is a polling condition: rt's worker no longer runs rt's query.
func stoppedRunning(su *pgx.Conn, rt runningTask) func() (bool, string) {
	return whileConnected(su, func() (bool, string) {
		active, err := stillRunning(su, rt)
		if err != nil {
			return false, err.Error()
		}
		return !active, fmt.Sprintf("worker %d still active in %q", rt.pid, rt.query)
	})
}

// requireNoOrphans waits until every 'running' row has a live worker (a
// freshly claimed task is 'running' a moment before its worker reports the
// query, hence the wait). A worker is recognized by pg_stat_activity.query
// = tasks.query.
func requireNoOrphans(t *testing.T, su *pgx.Conn) {
	t.Helper()
	requirePoll(t, waitTimeout, "no 'running' task without an active worker", whileConnected(su, func() (bool, string) {
		ids, err := queryRows[int64](su, `
			SELECT t.jobid FROM lantern.tasks t
			WHERE t.status = 'running'
			  AND NOT EXISTS (SELECT FROM pg_stat_activity a
			                  WHERE a.backend_type = $1 AND a.state = 'active' AND a.query = t.query)
			ORDER BY t.jobid`, backendWorker)
		if err != nil {
			return false, err.Error()
		}
		return len(ids) == 0, fmt.Sprintf("'running' without a worker: %v", ids)
	}))
}

// ---------------------------------------------------------------------------
// Keeping workers busy

// advisoryLock is an advisory lock held by a connection of its own. A task
// running waitSQL() stays 'running' until release, which lets a test fill
// worker slots for as long as it needs them.
type advisoryLock struct {
	conn     *pgx.Conn
	key      int64
	released bool
}

// holdAdvisoryLock takes a fresh advisory lock. It is released when the
// test ends at the latest, so that a failing test leaves no task blocked.
func holdAdvisoryLock(t *testing.T) *advisoryLock {
	t.Helper()
	l := &advisoryLock{conn: connect(t, superuser), key: 7_000_000 + nameCounter.Add(1)}
	mustExec(t, l.conn, "SELECT pg_advisory_lock($1)", l.key)
	t.Cleanup(func() {
		if !l.released {
			_, _ = l.conn.Exec(context.Background(), "SELECT pg_advisory_unlock_all()")
		}
	})
	return l
}

// waitSQL is a statement that waits until the lock is released.
func (l *advisoryLock) waitSQL() string {
	return fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", l.key)
}

func (l *advisoryLock) release(t *testing.T) {
	t.Helper()
	mustExec(t, l.conn, "SELECT pg_advisory_unlock($1)", l.key)
	l.released = true
}

// blockWorkers occupies n worker slots with superuser tasks that wait on
// the lock, and returns their jobids once each one is waiting.
func (l *advisoryLock) blockWorkers(t *testing.T, su *pgx.Conn, n int) []int64 {
	t.Helper()
	var blockers []int64
	for range n {
		blockers = append(blockers, submit(t, su, l.waitSQL()))
	}
	l.waitBlocked(t, su, blockers)
	return blockers
}

// waitBlocked waits until the tasks ids are 'running' and each is waiting
// for the lock.
func (l *advisoryLock) waitBlocked(t *testing.T, su *pgx.Conn, ids []int64) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("%d blocker tasks running and waiting on the advisory lock", len(ids)),
		whileConnected(su, func() (bool, string) {
			st, err := statusesOf(su, ids)
			if err != nil {
				return false, err.Error()
			}
			var waiting int
			if err := su.QueryRow(context.Background(), `
				SELECT count(*) FROM pg_locks
				WHERE locktype = 'advisory' AND NOT granted
				  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`,
				l.key).Scan(&waiting); err != nil {
				return false, err.Error()
			}
			return countStatus(st, "running") == len(ids) && waiting == len(ids),
				fmt.Sprintf("statuses %v, %d waiting on the lock", st, waiting)
		}))
}

// quietWindow is how long waitNoneConnected wants no worker or scout.
const quietWindow = time.Second

// waitNoneConnected waits (deadline waitTimeout) until no lantern_async
// worker or scout has been connected for quietWindow: what earlier tests
// left in motion (a backoff's next launch, a scout after a worker's exit)
// has settled, so a test that counts idle workers starts from nothing.
func waitNoneConnected(t *testing.T, su *pgx.Conn) {
	t.Helper()
	var since time.Time
	requirePoll(t, waitTimeout, "no lantern_async worker or scout for "+quietWindow.String(), whileConnected(su, func() (bool, string) {
		workers, err := countBackends(su, backendWorker)
		scouts, err2 := countBackends(su, backendScout)
		if err != nil || err2 != nil || workers+scouts > 0 {
			since = time.Time{}
			return false, fmt.Sprintf("%d workers, %d scouts, err=%v %v", workers, scouts, err, err2)
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= quietWindow, "quiet for " + time.Since(since).Round(time.Millisecond).String()
	}))
}
