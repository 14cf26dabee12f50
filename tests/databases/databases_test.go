package databases

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Every database: a database created while the server runs is served as
// soon as it has the extension, its tasks run concurrently with those of
// other databases, each in its own database as its role, and a task
// queued in a prepared transaction runs once COMMIT PREPARED commits it.

// TestNewDatabaseFirstTask: in a database created after the server
// started, the first task starts soon after its submit commits: the commit
// wakes the launcher, which launches a worker (a fraction of a second, up
// to about one on a loaded machine); a launcher not woken, or one that did
// not know the database, would start it at its next 10 s nap, so the
// bound is half of that. The start is the task's own clock_timestamp(); the commit is
// bounded from below by the clock_timestamp() the submitting transaction
// reads just before COMMIT, so the measured delay can only overstate the
// real one (by the COMMIT's round trip).
func TestNewDatabaseFirstTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	db := testkit.NewExtensionDatabase(t, su, "la_newdb")
	conn := testkit.ConnectTo(t, testkit.Cluster, db, "alice")

	tx, err := conn.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	id := testkit.Submit(t, tx, testkit.TraceSQL)
	var beforeCommit time.Time
	require.NoError(t, tx.QueryRow(testkit.Ctx(t), "SELECT clock_timestamp()").Scan(&beforeCommit))
	require.NoError(t, tx.Commit(testkit.Ctx(t)))
	testkit.RequireSucceeded(t, conn, id)

	trace := testkit.ReadTrace(t, db)
	require.Len(t, trace, 1)
	require.Equal(t, testkit.TraceRow{DB: db, User: "alice", Session: "alice"},
		testkit.TraceRow{DB: trace[0].DB, User: trace[0].User, Session: trace[0].Session})
	delay := trace[0].At.Sub(beforeCommit)
	t.Logf("first task of a new database: started %v after its submit's commit (upper bound)", delay.Round(time.Millisecond))
	require.Positive(t, delay)
	require.Less(t, delay, testkit.LauncherNaptime/2, "a new database's first task must start at its commit's wake-up, not the launcher's nap")
}

// TestTwoDatabasesRunConcurrently: alice's task in one database and bob's
// in another are running at the same moment (each waits on an advisory
// lock of its own database, which the test holds), and each ran in its
// database as its role.
func TestTwoDatabasesRunConcurrently(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	dbs := []string{testkit.NewExtensionDatabase(t, su, "la_dba"), testkit.NewExtensionDatabase(t, su, "la_dbb")}
	roles := []string{"alice", "bob"}
	var locks []*testkit.AdvisoryLock
	var ids []int64
	var conns []*pgx.Conn
	for i, db := range dbs {
		l := holdAdvisoryLockIn(t, db)
		locks = append(locks, l)
		conn := testkit.ConnectTo(t, testkit.Cluster, db, roles[i])
		conns = append(conns, conn)
		ids = append(ids, testkit.Submit(t, conn, testkit.TraceSQL+"; "+l.WaitSQL()))
	}
	want := []string{dbs[0] + " alice", dbs[1] + " bob"}
	testkit.RequirePoll(t, testkit.WaitTimeout, "both tasks running, each waiting on its database's lock", testkit.WhileConnected(su, func() (bool, string) {
		got, err := testkit.QueryRows[string](su, `
			SELECT datname || ' ' || usename FROM pg_stat_activity
			WHERE backend_type = $1 AND datname = ANY($2) AND state = 'active' AND wait_event_type = 'Lock'
			ORDER BY datname`, testkit.BackendWorker, dbs)
		return err == nil && strings.Join(got, ",") == strings.Join(want, ","), fmt.Sprintf("waiting workers %v, err=%v", got, err)
	}))
	for i, db := range dbs {
		locks[i].Release(t)
		testkit.RequireSucceeded(t, conns[i], ids[i])
		trace := testkit.ReadTrace(t, db)
		require.Len(t, trace, 1, "trace of %s", db)
		require.Equal(t, []string{db, roles[i], roles[i]}, []string{trace[0].DB, trace[0].User, trace[0].Session},
			"the task of %s ran there as %s", db, roles[i])
	}
}

// holdAdvisoryLockIn is testkit.HoldAdvisoryLock on a connection to db (advisory
// locks are per database).
func holdAdvisoryLockIn(t *testing.T, db string) *testkit.AdvisoryLock {
	t.Helper()
	l := &testkit.AdvisoryLock{Conn: testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser), Key: 7_000_000 + testkit.NameCounter.Add(1)}
	testkit.MustExec(t, l.Conn, "SELECT pg_advisory_lock($1)", l.Key)
	t.Cleanup(func() {
		if !l.Released {
			_, _ = l.Conn.Exec(context.Background(), "SELECT pg_advisory_unlock_all()")
		}
	})
	return l
}

// TestCommitPreparedRunsTask: a task queued in a transaction that is then
// prepared is invisible and does not run; COMMIT PREPARED (nothing else
// happens in that database) makes it run within a few seconds, which the
// launcher's 10 s naptime alone would not. The shared cluster runs with
// max_prepared_transactions = 0, so, as durability/prepared_task_test.go does, the
// test raises it with ALTER SYSTEM and a restart, and restores it at the
// end.
func TestCommitPreparedRunsTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	if testkit.QueryOne[int](t, su, "SELECT current_setting('max_prepared_transactions')::int") == 0 {
		t.Cleanup(func() {
			testkit.CleanupExec(t, "ALTER SYSTEM RESET max_prepared_transactions")
			if err := testkit.Cluster.Restart(pgcluster.Fast); err != nil {
				t.Errorf("cleanup: restart: %v", err)
			}
			testkit.ServerReady(t, testkit.WaitTimeout)
		})
		testkit.MustExec(t, su, "ALTER SYSTEM SET max_prepared_transactions = 5")
		testkit.RestartServer(t)
		su = testkit.Connect(t, testkit.Superuser)
	}
	db := testkit.NewExtensionDatabase(t, su, "la_prepdb")
	gid := testkit.Uniq("la_prep")
	rollbackPreparedInAtEnd(t, db, gid)
	conn := testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	suDB := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)

	testkit.MustExec(t, conn, "BEGIN")
	id := testkit.Submit(t, conn, testkit.TraceSQL)
	testkit.MustExec(t, conn, fmt.Sprintf("PREPARE TRANSACTION '%s'", gid))
	require.Equal(t, 0, testkit.QueryOne[int](t, suDB, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", id),
		"a prepared task is not visible")
	testkit.Never(t, 500*time.Millisecond, testkit.WhileConnected(suDB, func() (bool, string) {
		var tasks, traces, workers int
		err := suDB.QueryRow(context.Background(), `SELECT
			(SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1),
			(SELECT count(*)::int FROM trace),
			(SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND backend_type = $2)`,
			id, testkit.BackendWorker).Scan(&tasks, &traces, &workers)
		return err != nil || tasks+traces+workers > 0,
			fmt.Sprintf("task rows %d, trace rows %d, workers %d, err=%v", tasks, traces, workers, err)
	}), "the prepared task stays invisible and nothing runs in "+db)

	start := time.Now()
	testkit.MustExec(t, conn, fmt.Sprintf("COMMIT PREPARED '%s'", gid))
	testkit.RequireSucceededWithin(t, conn, id, 5*time.Second)
	t.Logf("task committed by COMMIT PREPARED succeeded %v after it", time.Since(start).Round(time.Millisecond))
	trace := testkit.ReadTrace(t, db)
	require.Len(t, trace, 1)
	require.Equal(t, []string{db, "alice"}, []string{trace[0].DB, trace[0].User})
}

// rollbackPreparedInAtEnd rolls back the prepared transaction gid of db if
// it is still there when the test ends (before the database is dropped:
// a prepared transaction keeps even DROP DATABASE ... WITH (FORCE) out).
func rollbackPreparedInAtEnd(t *testing.T, db, gid string) {
	t.Helper()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), testkit.CleanupTimeout)
		defer cancel()
		conn, err := testkit.Cluster.Connect(c, db, testkit.Superuser)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(c, "SELECT count(*)::int FROM pg_prepared_xacts WHERE gid = $1", gid).Scan(&n); err != nil || n == 0 {
			return
		}
		if _, err := conn.Exec(c, fmt.Sprintf("ROLLBACK PREPARED '%s'", gid)); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}
