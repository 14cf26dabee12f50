package durability

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

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
		testkit.CleanupExec(t, "ALTER SYSTEM RESET lantern_async.history_retention")
		testkit.CleanupExec(t, "SELECT pg_reload_conf()")
	})
	testkit.MustExec(t, su, fmt.Sprintf("ALTER SYSTEM SET lantern_async.history_retention = '%s'", value))
	testkit.MustExec(t, su, "SELECT pg_reload_conf()")
	testkit.RequirePoll(t, testkit.WaitTimeout, "history_retention = "+value+" in a new session", testkit.NewSessionShows("lantern_async.history_retention", value))
}

func TestHistoryRetentionDeletesOnlyFinishedRows(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	from := len(testkit.Cluster.Log())
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	pending := testkit.Submit(t, su, "SELECT 1")
	// Rows that finished an hour ago, as if written by an older worker:
	// more than one batch of them.
	testkit.MustExec(t, su, `INSERT INTO lantern.tasks (query, username, status, duration, started_at)
		SELECT 'SELECT 1', 'nobody', 'succeeded', interval '1 s', now() - interval '1 hour'
		FROM generate_series(1, 1200)`)
	setHistoryRetention(t, su, "2s")

	// A task that finishes now: its commit tells the launcher when it falls due.
	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	testkit.RequireSucceeded(t, su, pending)
	finished := testkit.QueryOne[time.Time](t, su, "SELECT started_at + duration FROM lantern.tasks WHERE jobid = $1", pending)
	testkit.RequirePoll(t, 30*time.Second, "the finished task is deleted once 2 s old", testkit.RowsLeft(su, 0, "lantern.tasks WHERE jobid = $1", pending))
	gone := time.Now()
	t.Logf("deleted %v after it finished (retention 2 s)", gone.Sub(finished).Round(100*time.Millisecond))
	require.Less(t, gone.Sub(finished), 2*time.Second+15*time.Second, "within about 10 s of falling due")
	require.Zero(t, testkit.QueryOne[int64](t, su, "SELECT count(*) FROM lantern.tasks WHERE username = 'nobody'"),
		"the old rows went too")
	require.Zero(t, testkit.QueryOne[int64](t, su, "SELECT count(*) FROM lantern.task_owners o WHERE o.jobid = $1", pending),
		"with the task's owner row")
	log := testkit.Cluster.Log()[from:]
	require.Contains(t, log, "finished task(s) older than lantern_async.history_retention")

	// Pending and running rows stay, however old, while a scout deletes
	// the finished row beside them (a task canceled while pending). None of
	// them is locked by anyone, so only the status filter protects them
	// (the scout's DELETE skips locked rows). The scout needs a free slot:
	// one blocker ends first, while the others keep their tasks running.
	// The pending row is of a role of its own, written as async_task
	// writes it but without telling the launcher: the scout is the first
	// to see it (it notes it on the board in the sweep that then deletes
	// history), and the scout holds the only free slot while it deletes,
	// so the role's worker can start only once the scout is gone.
	lockA, lockB := testkit.HoldAdvisoryLock(t), testkit.HoldAdvisoryLock(t)
	running := lockA.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)
	last := lockB.BlockWorkers(t, su, 1)
	victim := testkit.Submit(t, su, "SELECT 1")
	quiet := testkit.NewTempRole(t, su, "retention_pending")
	queued := testkit.QueryOne[int64](t, su, `WITH t AS (
			INSERT INTO lantern.tasks (query, username, status, started_at)
			VALUES ('SELECT 1', $1, 'pending', now() - interval '1 day') RETURNING jobid)
		INSERT INTO lantern.task_owners (jobid, roleid, datid, due)
		SELECT jobid, $1::regrole, (SELECT oid FROM pg_database WHERE datname = current_database()), now() - interval '1 day'
		FROM t RETURNING jobid`, quiet)
	testkit.MustExec(t, su, "UPDATE lantern.tasks SET started_at = now() - interval '1 day' WHERE jobid = ANY ($1)",
		append([]int64{victim}, running...))
	testkit.RequireCancelTask(t, su, victim, true)
	lockB.Release(t)
	testkit.RequireSucceeded(t, su, last...)
	testkit.RequirePoll(t, 30*time.Second, "the canceled task is deleted once 2 s old", testkit.RowsLeft(su, 0, "lantern.tasks WHERE jobid = $1", victim))
	require.Equal(t, int64(len(running)), testkit.QueryOne[int64](t, su,
		"SELECT count(*) FROM lantern.tasks WHERE jobid = ANY ($1) AND status = 'running'", running),
		"the running tasks, a day old, are still there and running")
	// The pending row was not deleted: it runs once the scout has left.
	require.Equal(t, int64(1), testkit.QueryOne[int64](t, su, "SELECT count(*) FROM lantern.tasks WHERE jobid = $1", queued),
		"the pending task, a day old, is still there")
	testkit.RequireSucceeded(t, su, queued)
	lockA.Release(t)
	testkit.RequireSucceeded(t, su, running...)
}

// With no retention (the default) nothing is deleted, even by a scout's
// pass over the database. The pass is made to happen and is observed: a
// database's last worker leaving sends a scout there for housekeeping,
// whose sweep fails a row that was not submitted through async_task and
// then (same sweep, same process) expires history. Once that row is
// failed and no scout is left in the database, a pass has run after the
// finished row fell due under any retention.
func TestHistoryRetentionZeroKeepsEverything(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	require.Equal(t, "0", testkit.QueryOne[string](t, su, "SHOW lantern_async.history_retention"))
	db := testkit.NewExtensionDatabase(t, su, "retention_zero")
	dbSU := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
	conn := testkit.ConnectTo(t, testkit.Cluster, db, "alice")

	old := testkit.Submit(t, conn, "SELECT 1")
	testkit.RequireSucceeded(t, conn, old)
	testkit.MustExec(t, dbSU, "UPDATE lantern.tasks SET started_at = now() - interval '10 years' WHERE jobid = $1", old)
	unowned := testkit.QueryOne[int64](t, dbSU, `INSERT INTO lantern.tasks (query, username, status)
		VALUES ('SELECT 1', 'nobody', 'pending') RETURNING jobid`)
	// Whichever scout fails it swept after the row above was made old.
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
	status, msg := testkit.WaitTask(t, dbSU, unowned)
	require.Equal(t, "failed", status, "a scout's sweep failed the row not submitted through async_task: %s", msg)
	testkit.RequirePoll(t, testkit.WaitTimeout, "the scout of "+db+" to finish its sweep", testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1 AND datname = $2", testkit.BackendScout, db)
		return err == nil && len(n) == 0, fmt.Sprintf("scouts %v, err=%v", n, err)
	}))
	require.Equal(t, int64(1), testkit.QueryOne[int64](t, dbSU, "SELECT count(*) FROM lantern.tasks WHERE jobid = $1", old),
		"a finished row 10 years old, after a scout's pass with history_retention = 0")
}
