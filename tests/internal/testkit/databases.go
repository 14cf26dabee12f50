package testkit

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Databases of a test's own (with the extension), the worker idle timeout,
// our processes in a database, a tablespace directory.

const BackendScout = "lantern_async scout"

// TraceSQL is a task query that records, in table trace of its database,
// where and as whom it runs, its process and when it started.
const TraceSQL = "INSERT INTO trace SELECT current_database(), current_user, session_user, pg_backend_pid(), clock_timestamp()"

// TraceRow is a row TraceSQL wrote.
type TraceRow struct {
	DB, User, Session string
	Pid               int
	At                time.Time
}

// DropDatabaseAtEnd drops database name (if it exists, whoever is
// connected) when the test ends.
func DropDatabaseAtEnd(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() { CleanupExec(t, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
}

// NewDatabase creates a database, dropped when the test ends.
func NewDatabase(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	db := Ident(t, Uniq(base))
	DropDatabaseAtEnd(t, db)
	MustExec(t, su, "CREATE DATABASE "+db)
	return db
}

// NewExtensionDatabase creates a database with the extension, the test
// roles' grants and a table trace (see TraceSQL) they may write, through a
// connection closed before it returns: the test's DROP or ALTER DATABASE
// must find no client session of ours there.
func NewExtensionDatabase(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	db := NewDatabase(t, su, base)
	c, cancel := context.WithTimeout(Ctx(t), WaitTimeout)
	defer cancel()
	conn, err := Cluster.Connect(c, db, Superuser)
	require.NoError(t, err, "connect to %s", db)
	defer conn.Close(context.Background())
	_, err = conn.Exec(c, "CREATE EXTENSION lantern_async")
	require.NoError(t, err, "CREATE EXTENSION lantern_async in %s", db)
	require.NoError(t, GrantExtensionAccess(c, conn))
	_, err = conn.Exec(c, "CREATE TABLE trace(db name, usr name, sess name, pid int, at timestamptz); "+
		"GRANT SELECT, INSERT ON trace TO alice, bob, carol")
	require.NoError(t, err, "create table trace in %s", db)
	return db
}

// ReadTrace returns the rows of db's table trace, oldest first.
func ReadTrace(t *testing.T, db string) []TraceRow {
	t.Helper()
	conn := ConnectTo(t, Cluster, db, Superuser)
	defer CloseConn(t, conn)
	rows, err := conn.Query(Ctx(t), "SELECT db::text, usr::text, sess::text, pid, at FROM trace ORDER BY at")
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TraceRow, error) {
		var tr TraceRow
		err := r.Scan(&tr.DB, &tr.User, &tr.Session, &tr.Pid, &tr.At)
		return tr, err
	})
	require.NoError(t, err)
	return out
}

// CloseConn closes a connection now (ConnectTo's cleanup closes it again,
// harmlessly).
func CloseConn(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = conn.Close(c)
}

// RequireNoClients waits until no client session is connected to db (a
// closed pgx connection's backend exits a moment later), so that a DROP or
// ALTER DATABASE that follows finds only our background processes there.
func RequireNoClients(t *testing.T, su *pgx.Conn, db string) {
	t.Helper()
	RequirePoll(t, WaitTimeout, "no client session in database "+db, WhileConnected(su, func() (bool, string) {
		pids, err := QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'", db)
		return err == nil && len(pids) == 0, fmt.Sprintf("client backends %v, err=%v", pids, err)
	}))
}

// OurProcessesIn lists "pid backend_type usename" of the lantern_async
// workers and scouts connected to db.
func OurProcessesIn(conn *pgx.Conn, db string) ([]string, error) {
	return QueryRows[string](conn, `
		SELECT pid || ' ' || backend_type || ' ' || coalesce(usename::text, '') FROM pg_stat_activity
		WHERE datname = $1 AND backend_type IN ($2, $3) ORDER BY pid`, db, BackendWorker, BackendScout)
}

// WorkerPidsIn lists the pids of the lantern_async workers of role
// connected to db.
func WorkerPidsIn(conn *pgx.Conn, db, role string) ([]int, error) {
	return QueryRows[int](conn, `
		SELECT pid FROM pg_stat_activity
		WHERE datname = $1 AND backend_type = $2 AND usename = $3 ORDER BY pid`, db, BackendWorker, role)
}

// IdleWorkerIn runs a task of role in db and returns the pid of the
// worker that ran it, once that worker waits idle (still connected to db,
// the only worker of role there). It closes its connections to db.
func IdleWorkerIn(t *testing.T, su *pgx.Conn, db, role string) int {
	t.Helper()
	conn := ConnectTo(t, Cluster, db, role)
	RequireSucceeded(t, conn, Submit(t, conn, TraceSQL))
	CloseConn(t, conn)
	trace := ReadTrace(t, db)
	require.NotEmpty(t, trace)
	pid := trace[len(trace)-1].Pid
	pids, err := WorkerPidsIn(su, db, role)
	require.NoError(t, err)
	require.Equal(t, []int{pid}, pids, "the worker that ran the task waits idle in %s (worker_idle_timeout)", db)
	return pid
}

// SlowIdleTimeout is a worker_idle_timeout long enough that a test can
// tell a slot handed over at once (a launch or two, up to about 3 s
// measured on two cores busy with other work) from one that waited for an
// idle worker's timeout: bound the first by HandoffBound.
const (
	SlowIdleTimeout = 10 * time.Second
	HandoffBound    = SlowIdleTimeout / 2
)

// SetWorkerIdleTimeout sets lantern_async.worker_idle_timeout (ALTER
// SYSTEM, reload) until the test ends, and waits until a new session sees
// it, so that workers launched from now on wait that long.
func SetWorkerIdleTimeout(t *testing.T, su *pgx.Conn, d time.Duration) {
	t.Helper()
	t.Cleanup(func() {
		CleanupExec(t, "ALTER SYSTEM RESET lantern_async.worker_idle_timeout")
		CleanupExec(t, "SELECT pg_reload_conf()")
		if ok, last := IdleTimeoutIs(t, "the default"); !ok {
			t.Errorf("cleanup: lantern_async.worker_idle_timeout not reset: %s", last)
		}
	})
	MustExec(t, su, fmt.Sprintf("ALTER SYSTEM SET lantern_async.worker_idle_timeout = %d", d.Milliseconds()))
	MustExec(t, su, "SELECT pg_reload_conf()")
	if ok, last := IdleTimeoutIs(t, strconv.FormatInt(d.Milliseconds(), 10)); !ok {
		t.Fatalf("lantern_async.worker_idle_timeout is not %v in a new session: %s", d, last)
	}
}

// IdleTimeoutIs waits (10 s at most) until a new session's
// lantern_async.worker_idle_timeout (in ms) is want ("the default": its
// boot value).
func IdleTimeoutIs(t *testing.T, want string) (bool, string) {
	t.Helper()
	return Poll(t, 10*time.Second, func() (bool, string) {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := Cluster.Connect(c, DBName, Superuser)
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close(context.Background())
		var setting, boot, shown string
		if err := conn.QueryRow(c, `SELECT setting, boot_val, current_setting(name) FROM pg_settings
			WHERE name = 'lantern_async.worker_idle_timeout'`).Scan(&setting, &boot, &shown); err != nil {
			return false, err.Error()
		}
		if want == "the default" {
			return setting == boot, fmt.Sprintf("setting %s ms (SHOW: %s), boot value %s", setting, shown, boot)
		}
		return setting == want, fmt.Sprintf("setting %s ms (SHOW: %s)", setting, shown)
	}, "lantern_async.worker_idle_timeout in a new session")
}

// RequireSucceededWithin waits at most d for the task (through conn) to
// end, and requires it succeeded.
func RequireSucceededWithin(t *testing.T, conn *pgx.Conn, jobid int64, d time.Duration) {
	t.Helper()
	var status, msg string
	RequirePoll(t, d, fmt.Sprintf("task %d to end", jobid), WhileConnected(conn, func() (bool, string) {
		var st, em *string
		err := conn.QueryRow(context.Background(),
			"SELECT status, error_message FROM lantern.tasks WHERE jobid = $1", jobid).Scan(&st, &em)
		if err != nil {
			return false, err.Error()
		}
		status, msg = Deref(st), Deref(em)
		return IsFinal(status), "status " + status
	}))
	require.Equal(t, "succeeded", status, "task %d: %s", jobid, msg)
}

// TablespaceDir makes an empty directory for CREATE TABLESPACE, owned by
// the server's OS user where the server can reach it, removed when the
// test ends.
func TablespaceDir(t *testing.T) string {
	t.Helper()
	dir, err := Cluster.ServerDir("lantern_async_ts_")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
