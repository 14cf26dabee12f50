package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// lantern_async.history_retention (README "Retention"): finished rows older
// than it are deleted by a scout within about 10 s of falling due, in small
// batches; pending and running rows never are.

// setHistoryRetention sets the GUC with ALTER SYSTEM and a reload, and
// puts it back at the end.
func setHistoryRetention(t *testing.T, su *pgx.Conn, value string) {
	t.Helper()
	t.Cleanup(func() {
		cleanupExec(t, "ALTER SYSTEM RESET lantern_async.history_retention")
		cleanupExec(t, "SELECT pg_reload_conf()")
	})
	mustExec(t, su, fmt.Sprintf("ALTER SYSTEM SET lantern_async.history_retention = '%s'", value))
	mustExec(t, su, "SELECT pg_reload_conf()")
	require.Eventually(t, func() bool {
		c := connect(t, superuser)
		defer closeConn(t, c)
		return queryOne[string](t, c, "SHOW lantern_async.history_retention") == value
	}, waitTimeout, 20*time.Millisecond, "history_retention = %s in a new session", value)
}

func TestHistoryRetentionDeletesOnlyFinishedRows(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	from := len(cluster.Log())
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	pending := submit(t, su, "SELECT 1")
	// Rows that finished an hour ago, as if written by an older worker:
	// more than one batch of them.
	mustExec(t, su, `INSERT INTO lantern.tasks (query, username, status, duration, started_at)
		SELECT 'SELECT 1', 'nobody', 'succeeded', interval '1 s', now() - interval '1 hour'
		FROM generate_series(1, 1200)`)
	setHistoryRetention(t, su, "2s")

	// A task that finishes now: its commit tells the launcher when it falls due.
	lock.release(t)
	requireSucceeded(t, su, blockers...)
	requireSucceeded(t, su, pending)
	finished := queryOne[time.Time](t, su, "SELECT started_at + duration FROM lantern.tasks WHERE jobid = $1", pending)
	require.Eventually(t, func() bool {
		return queryOne[int64](t, su, "SELECT count(*) FROM lantern.tasks WHERE jobid = $1", pending) == 0
	}, 30*time.Second, 50*time.Millisecond, "the finished task is deleted once 2 s old")
	gone := time.Now()
	t.Logf("deleted %v after it finished (retention 2 s)", gone.Sub(finished).Round(100*time.Millisecond))
	require.Less(t, gone.Sub(finished), 2*time.Second+15*time.Second, "within about 10 s of falling due")
	require.Zero(t, queryOne[int64](t, su, "SELECT count(*) FROM lantern.tasks WHERE username = 'nobody'"),
		"the old rows went too")
	require.Zero(t, queryOne[int64](t, su, "SELECT count(*) FROM lantern.task_owners o WHERE o.jobid = $1", pending),
		"with the task's owner row")
	log := cluster.Log()[from:]
	require.Contains(t, log, "finished task(s) older than lantern_async.history_retention")

	// Pending and running tasks stay, however old, while a scout deletes
	// the finished row beside them (a task canceled while pending). The
	// scout needs a free slot: one blocker ends first, and the pending task
	// stays pending because a session holds its row (claims skip it).
	lockA, lockB := holdAdvisoryLock(t), holdAdvisoryLock(t)
	running := lockA.blockWorkers(t, su, cluster.MaxWorkers()-1)
	last := lockB.blockWorkers(t, su, 1)
	queued := submit(t, su, "SELECT 1")
	victim := submit(t, su, "SELECT 1")
	mustExec(t, su, "UPDATE lantern.tasks SET started_at = now() - interval '1 day' WHERE jobid = ANY ($1)",
		append([]int64{queued, victim}, running...))
	holder := beginHeld(t, connect(t, superuser))
	mustExec(t, holder.conn, "SELECT FROM lantern.tasks WHERE jobid = $1 FOR UPDATE", queued)
	requireCancelTask(t, su, victim, true)
	lockB.release(t)
	requireSucceeded(t, su, last...)
	require.Eventually(t, func() bool {
		return queryOne[int64](t, su, "SELECT count(*) FROM lantern.tasks WHERE jobid = $1", victim) == 0
	}, 30*time.Second, 50*time.Millisecond, "the canceled task is deleted once 2 s old")
	require.Equal(t, "pending", queryOne[string](t, su, "SELECT status FROM lantern.tasks WHERE jobid = $1", queued))
	require.Equal(t, int64(len(running)), queryOne[int64](t, su,
		"SELECT count(*) FROM lantern.tasks WHERE jobid = ANY ($1) AND status = 'running'", running))
	holder.end(t, "ROLLBACK")
	lockA.release(t)
	requireSucceeded(t, su, append(running, queued)...)
}

// With no retention (the default) nothing is deleted.
func TestHistoryRetentionZeroKeepsEverything(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	require.Equal(t, "0", queryOne[string](t, su, "SHOW lantern_async.history_retention"))
	id := submit(t, su, "SELECT 1")
	requireSucceeded(t, su, id)
	mustExec(t, su, "UPDATE lantern.tasks SET started_at = now() - interval '10 years' WHERE jobid = $1", id)
	require.True(t, never(t, 3*time.Second, func() (bool, string) {
		return queryOne[int64](t, su, "SELECT count(*) FROM lantern.tasks WHERE jobid = $1", id) == 0, "deleted"
	}, "a finished row deleted with history_retention = 0"))
}
