package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
	begin(t)
	su := connect(t, superuser)
	db := newExtensionDatabase(t, su, "la_newdb")
	conn := connectTo(t, cluster, db, "alice")

	tx, err := conn.Begin(ctx(t))
	require.NoError(t, err)
	id := submit(t, tx, traceSQL)
	var beforeCommit time.Time
	require.NoError(t, tx.QueryRow(ctx(t), "SELECT clock_timestamp()").Scan(&beforeCommit))
	require.NoError(t, tx.Commit(ctx(t)))
	requireSucceeded(t, conn, id)

	trace := readTrace(t, db)
	require.Len(t, trace, 1)
	require.Equal(t, traceRow{DB: db, User: "alice", Session: "alice"},
		traceRow{DB: trace[0].DB, User: trace[0].User, Session: trace[0].Session})
	delay := trace[0].At.Sub(beforeCommit)
	t.Logf("first task of a new database: started %v after its submit's commit (upper bound)", delay.Round(time.Millisecond))
	require.Positive(t, delay)
	require.Less(t, delay, launcherNaptime/2, "a new database's first task must start at its commit's wake-up, not the launcher's nap")
}

// TestTwoDatabasesRunConcurrently: alice's task in one database and bob's
// in another are running at the same moment (each waits on an advisory
// lock of its own database, which the test holds), and each ran in its
// database as its role.
func TestTwoDatabasesRunConcurrently(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	dbs := []string{newExtensionDatabase(t, su, "la_dba"), newExtensionDatabase(t, su, "la_dbb")}
	roles := []string{"alice", "bob"}
	var locks []*advisoryLock
	var ids []int64
	var conns []*pgx.Conn
	for i, db := range dbs {
		l := holdAdvisoryLockIn(t, db)
		locks = append(locks, l)
		conn := connectTo(t, cluster, db, roles[i])
		conns = append(conns, conn)
		ids = append(ids, submit(t, conn, traceSQL+"; "+l.waitSQL()))
	}
	want := []string{dbs[0] + " alice", dbs[1] + " bob"}
	requirePoll(t, waitTimeout, "both tasks running, each waiting on its database's lock", whileConnected(su, func() (bool, string) {
		got, err := queryRows[string](su, `
			SELECT datname || ' ' || usename FROM pg_stat_activity
			WHERE backend_type = $1 AND datname = ANY($2) AND state = 'active' AND wait_event_type = 'Lock'
			ORDER BY datname`, backendWorker, dbs)
		return err == nil && strings.Join(got, ",") == strings.Join(want, ","), fmt.Sprintf("waiting workers %v, err=%v", got, err)
	}))
	for i, db := range dbs {
		locks[i].release(t)
		requireSucceeded(t, conns[i], ids[i])
		trace := readTrace(t, db)
		require.Len(t, trace, 1, "trace of %s", db)
		require.Equal(t, []string{db, roles[i], roles[i]}, []string{trace[0].DB, trace[0].User, trace[0].Session},
			"the task of %s ran there as %s", db, roles[i])
	}
}

// holdAdvisoryLockIn is holdAdvisoryLock on a connection to db (advisory
// locks are per database).
func holdAdvisoryLockIn(t *testing.T, db string) *advisoryLock {
	t.Helper()
	l := &advisoryLock{conn: connectTo(t, cluster, db, superuser), key: 7_000_000 + nameCounter.Add(1)}
	mustExec(t, l.conn, "SELECT pg_advisory_lock($1)", l.key)
	t.Cleanup(func() {
		if !l.released {
			_, _ = l.conn.Exec(context.Background(), "SELECT pg_advisory_unlock_all()")
		}
	})
	return l
}

// TestCommitPreparedRunsTask: a task queued in a transaction that is then
// prepared is invisible and does not run; COMMIT PREPARED (nothing else
// happens in that database) makes it run within a few seconds, which the
// launcher's 10 s naptime alone would not. The shared cluster runs with
// max_prepared_transactions = 0, so, as prepared_task_test.go does, the
// test raises it with ALTER SYSTEM and a restart, and restores it at the
// end.
func TestCommitPreparedRunsTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	if queryOne[int](t, su, "SELECT current_setting('max_prepared_transactions')::int") == 0 {
		t.Cleanup(func() {
			cleanupExec(t, "ALTER SYSTEM RESET max_prepared_transactions")
			if err := cluster.Restart(pgcluster.Fast); err != nil {
				t.Errorf("cleanup: restart: %v", err)
			}
			serverReady(t, waitTimeout)
		})
		mustExec(t, su, "ALTER SYSTEM SET max_prepared_transactions = 5")
		restartServer(t)
		su = connect(t, superuser)
	}
	db := newExtensionDatabase(t, su, "la_prepdb")
	gid := uniq("la_prep")
	rollbackPreparedInAtEnd(t, db, gid)
	conn := connectTo(t, cluster, db, "alice")
	suDB := connectTo(t, cluster, db, superuser)

	mustExec(t, conn, "BEGIN")
	id := submit(t, conn, traceSQL)
	mustExec(t, conn, fmt.Sprintf("PREPARE TRANSACTION '%s'", gid))
	require.Equal(t, 0, queryOne[int](t, suDB, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", id),
		"a prepared task is not visible")
	never(t, 500*time.Millisecond, whileConnected(suDB, func() (bool, string) {
		var tasks, traces, workers int
		err := suDB.QueryRow(context.Background(), `SELECT
			(SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1),
			(SELECT count(*)::int FROM trace),
			(SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND backend_type = $2)`,
			id, backendWorker).Scan(&tasks, &traces, &workers)
		return err != nil || tasks+traces+workers > 0,
			fmt.Sprintf("task rows %d, trace rows %d, workers %d, err=%v", tasks, traces, workers, err)
	}), "the prepared task stays invisible and nothing runs in "+db)

	start := time.Now()
	mustExec(t, conn, fmt.Sprintf("COMMIT PREPARED '%s'", gid))
	requireSucceededWithin(t, conn, id, 5*time.Second)
	t.Logf("task committed by COMMIT PREPARED succeeded %v after it", time.Since(start).Round(time.Millisecond))
	trace := readTrace(t, db)
	require.Len(t, trace, 1)
	require.Equal(t, []string{db, "alice"}, []string{trace[0].DB, trace[0].User})
}

// rollbackPreparedInAtEnd rolls back the prepared transaction gid of db if
// it is still there when the test ends (before the database is dropped:
// a prepared transaction keeps even DROP DATABASE ... WITH (FORCE) out).
func rollbackPreparedInAtEnd(t *testing.T, db, gid string) {
	t.Helper()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		conn, err := cluster.Connect(c, db, superuser)
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
