package testkit

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

// BackendPids lists the pids of the processes of a backend_type.
func BackendPids(conn *pgx.Conn, backendType string) ([]int, error) {
	return QueryRows[int](conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1", backendType)
}

// CountBackends counts pg_stat_activity rows of a backend_type.
func CountBackends(conn *pgx.Conn, backendType string) (int, error) {
	pids, err := BackendPids(conn, backendType)
	return len(pids), err
}

// LauncherPid returns the pid of the one launcher.
func LauncherPid(t *testing.T, su *pgx.Conn) int {
	t.Helper()
	pids, err := BackendPids(su, BackendLauncher)
	require.NoError(t, err)
	require.Len(t, pids, 1, "exactly one %s", BackendLauncher)
	return pids[0]
}

// WaitWorkerCount waits until exactly want worker processes exist.
func WaitWorkerCount(t *testing.T, su *pgx.Conn, want int, what string) {
	t.Helper()
	RequirePoll(t, WaitTimeout, what, WhileConnected(su, func() (bool, string) {
		n, err := CountBackends(su, BackendWorker)
		return err == nil && n == want, fmt.Sprintf("%d workers, err=%v", n, err)
	}))
}

// ActiveWorkerPids lists the lantern_async workers that show query as
// 'active' in pg_stat_activity.
func ActiveWorkerPids(conn *pgx.Conn, query string) ([]int, error) {
	return QueryRows[int](conn, `
		SELECT pid FROM pg_stat_activity
		WHERE backend_type = $1 AND state = 'active' AND query = $2`, BackendWorker, query)
}

// WorkerPid returns the pid of the one active lantern_async worker whose
// pg_stat_activity.query is query.
func WorkerPid(t *testing.T, su *pgx.Conn, query string) int {
	t.Helper()
	pids, err := ActiveWorkerPids(su, query)
	require.NoError(t, err)
	require.Len(t, pids, 1, "exactly one worker runs %q", query)
	return pids[0]
}

// SleepQuery is a long query text unique to this test run, so that its
// pg_stat_activity row can be told apart.
func SleepQuery(seconds int, tag string) string {
	return fmt.Sprintf("SELECT pg_sleep(%d) /* %s */", seconds, Uniq(tag))
}

// RunningTask is a task a lantern_async worker is running.
type RunningTask struct {
	ID    int64
	Query string
	Pid   int // of the worker
}

// StartTask submits query (a text unique to the test run, see SleepQuery)
// through conn and waits until the task is 'running' and a lantern_async
// worker shows its query as 'active' in pg_stat_activity.
func StartTask(t *testing.T, su, conn *pgx.Conn, query string) RunningTask {
	t.Helper()
	rt := RunningTask{ID: Submit(t, conn, query), Query: query}
	RequirePoll(t, WaitTimeout, fmt.Sprintf("task %d running in a %s", rt.ID, BackendWorker), WhileConnected(su, func() (bool, string) {
		var st *string
		if err := su.QueryRow(context.Background(),
			"SELECT status FROM lantern.tasks WHERE jobid = $1", rt.ID).Scan(&st); err != nil {
			return false, "read task: " + err.Error()
		}
		pids, err := ActiveWorkerPids(su, query)
		if err != nil {
			return false, err.Error()
		}
		if Deref(st) == "running" && len(pids) == 1 {
			rt.Pid = pids[0]
			return true, ""
		}
		return false, fmt.Sprintf("status=%q, active worker pids with the query: %v", Deref(st), pids)
	}))
	// A test that fails half-way must not leave a long sleeper behind.
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = Cluster.Exec(c, DBName, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND query = $2`, rt.Pid, query)
	})
	return rt
}

// WaitIdleWorker waits until role has exactly one worker and it waits
// idle for more tasks (on its latch: wait_event Extension).
func WaitIdleWorker(t *testing.T, su *pgx.Conn, role string) {
	t.Helper()
	RequirePoll(t, WaitTimeout, "a worker of "+role+" waiting idle", WhileConnected(su, func() (bool, string) {
		evs, err := QueryRows[string](su, `SELECT coalesce(wait_event, '<none>') FROM pg_stat_activity
			WHERE backend_type = $1 AND usename = $2`, BackendWorker, role)
		if err != nil {
			return false, err.Error()
		}
		return len(evs) == 1 && evs[0] == "Extension", fmt.Sprintf("wait events of its workers: %v", evs)
	}))
}

// CancelBound is how soon a canceled task's worker must stop running it:
// the cancel is a signal, at once, and the tasks canceled in the tests
// run for a minute when it is lost; the rest is a loaded machine.
const CancelBound = 5 * time.Second

// StillRunning reports whether rt's worker still shows rt's query as 'active'.
func StillRunning(conn *pgx.Conn, rt RunningTask) (bool, error) {
	var n int
	err := conn.QueryRow(context.Background(),
		"SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = $2",
		rt.Pid, rt.Query).Scan(&n)
	return n > 0, err
}

// StoppedRunning is a polling condition: rt's worker no longer runs rt's query.
func StoppedRunning(su *pgx.Conn, rt RunningTask) func() (bool, string) {
	return WhileConnected(su, func() (bool, string) {
		active, err := StillRunning(su, rt)
		if err != nil {
			return false, err.Error()
		}
		return !active, fmt.Sprintf("worker %d still active in %q", rt.Pid, rt.Query)
	})
}

// RequireNoOrphans waits until every 'running' row has a live worker (a
// freshly claimed task is 'running' a moment before its worker reports the
// query, hence the wait). A worker is recognized by pg_stat_activity.query
// = tasks.query.
func RequireNoOrphans(t *testing.T, su *pgx.Conn) {
	t.Helper()
	RequirePoll(t, WaitTimeout, "no 'running' task without an active worker", WhileConnected(su, func() (bool, string) {
		ids, err := QueryRows[int64](su, `
			SELECT t.jobid FROM lantern.tasks t
			WHERE t.status = 'running'
			  AND NOT EXISTS (SELECT FROM pg_stat_activity a
			                  WHERE a.backend_type = $1 AND a.state = 'active' AND a.query = t.query)
			ORDER BY t.jobid`, BackendWorker)
		if err != nil {
			return false, err.Error()
		}
		return len(ids) == 0, fmt.Sprintf("'running' without a worker: %v", ids)
	}))
}

// ---------------------------------------------------------------------------
// Keeping workers busy

// AdvisoryLock is an advisory lock held by a connection of its own. A task
// running WaitSQL() stays 'running' until release, which lets a test fill
// worker slots for as long as it needs them.
type AdvisoryLock struct {
	Conn     *pgx.Conn
	Key      int64
	Released bool
}

// HoldAdvisoryLock takes a fresh advisory lock. It is released when the
// test ends at the latest, so that a failing test leaves no task blocked.
func HoldAdvisoryLock(t *testing.T) *AdvisoryLock {
	t.Helper()
	l := &AdvisoryLock{Conn: Connect(t, Superuser), Key: 7_000_000 + NameCounter.Add(1)}
	MustExec(t, l.Conn, "SELECT pg_advisory_lock($1)", l.Key)
	t.Cleanup(func() {
		if !l.Released {
			_, _ = l.Conn.Exec(context.Background(), "SELECT pg_advisory_unlock_all()")
		}
	})
	return l
}

// WaitSQL is a statement that waits until the lock is released.
func (l *AdvisoryLock) WaitSQL() string {
	return fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", l.Key)
}

func (l *AdvisoryLock) Release(t *testing.T) {
	t.Helper()
	MustExec(t, l.Conn, "SELECT pg_advisory_unlock($1)", l.Key)
	l.Released = true
}

// BlockWorkers occupies n worker slots with superuser tasks that wait on
// the lock, and returns their jobids once each one is waiting.
func (l *AdvisoryLock) BlockWorkers(t *testing.T, su *pgx.Conn, n int) []int64 {
	t.Helper()
	var blockers []int64
	for range n {
		blockers = append(blockers, Submit(t, su, l.WaitSQL()))
	}
	l.WaitBlocked(t, su, blockers)
	return blockers
}

// WaitBlocked waits until the tasks ids are 'running' and each is waiting
// for the lock.
func (l *AdvisoryLock) WaitBlocked(t *testing.T, su *pgx.Conn, ids []int64) {
	t.Helper()
	RequirePoll(t, WaitTimeout, fmt.Sprintf("%d blocker tasks running and waiting on the advisory lock", len(ids)),
		WhileConnected(su, func() (bool, string) {
			st, err := StatusesOf(su, ids)
			if err != nil {
				return false, err.Error()
			}
			var waiting int
			if err := su.QueryRow(context.Background(), `
				SELECT count(*) FROM pg_locks
				WHERE locktype = 'advisory' AND NOT granted
				  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`,
				l.Key).Scan(&waiting); err != nil {
				return false, err.Error()
			}
			return CountStatus(st, "running") == len(ids) && waiting == len(ids),
				fmt.Sprintf("statuses %v, %d waiting on the lock", st, waiting)
		}))
}

// QuietWindow is how long WaitNoneConnected wants no worker or scout.
const QuietWindow = time.Second

// WaitNoneConnected waits (deadline WaitTimeout) until no lantern_async
// worker or scout has been connected for QuietWindow: what earlier tests
// left in motion (a backoff's next launch, a scout after a worker's exit)
// has settled, so a test that counts idle workers starts from nothing.
func WaitNoneConnected(t *testing.T, su *pgx.Conn) {
	t.Helper()
	var since time.Time
	RequirePoll(t, WaitTimeout, "no lantern_async worker or scout for "+QuietWindow.String(), WhileConnected(su, func() (bool, string) {
		workers, err := CountBackends(su, BackendWorker)
		scouts, err2 := CountBackends(su, BackendScout)
		if err != nil || err2 != nil || workers+scouts > 0 {
			since = time.Time{}
			return false, fmt.Sprintf("%d workers, %d scouts, err=%v %v", workers, scouts, err, err2)
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= QuietWindow, "quiet for " + time.Since(since).Round(time.Millisecond).String()
	}))
}

// RequireStopsRunning waits at most testkit.CancelBound for rt's worker to stop
// running rt's query.
func RequireStopsRunning(t *testing.T, su *pgx.Conn, rt RunningTask) {
	t.Helper()
	RequirePoll(t, CancelBound, fmt.Sprintf("worker %d to stop running %q", rt.Pid, rt.Query), StoppedRunning(su, rt))
}

// WaitAllFinal waits until every task of ids has a final status.
func WaitAllFinal(t *testing.T, su *pgx.Conn, ids []int64) {
	t.Helper()
	RequirePoll(t, WaitTimeout, fmt.Sprintf("all %d tasks to reach a final status", len(ids)), WhileConnected(su, func() (bool, string) {
		st, err := StatusesOf(su, ids)
		if err != nil {
			return false, err.Error()
		}
		var open []string
		for i, s := range st {
			if !IsFinal(s) {
				open = append(open, fmt.Sprintf("%d:%s", ids[i], s))
			}
		}
		return len(open) == 0, fmt.Sprintf("unfinished: %v", open)
	}))
}
