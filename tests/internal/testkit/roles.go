package testkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Temporary roles, bulk submits and status counts, and an extension
// re-created by a test.

// CleanupConn opens a superuser connection for a t.Cleanup function (the
// test's own connections may be closed or broken by then).
func CleanupConn(t *testing.T) (*pgx.Conn, context.Context, func()) {
	t.Helper()
	// On a server that crashed during the test, wait for crash recovery.
	if ok, last := ServerReady(t, WaitTimeout); !ok {
		t.Errorf("cleanup: server not ready: %s", last)
		return nil, nil, func() {}
	}
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	conn, err := Cluster.Connect(c, DBName, Superuser)
	if err != nil {
		cancel()
		t.Errorf("cleanup: connect: %v", err)
		return nil, nil, func() {}
	}
	return conn, c, func() { conn.Close(context.Background()); cancel() }
}

// NewTempRole creates a fresh LOGIN role that is dropped when the test ends
// (after its tasks are purged, see PurgeTasksAtEnd).
func NewTempRole(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	r := NewLoginRole(t, su, base)
	DropRolesAtEnd(t, r)
	return r
}

// DropRolesAtEnd drops roles (and everything they own or were granted in
// the database) when the test ends; their tasks are purged first.
func DropRolesAtEnd(t *testing.T, roles ...string) {
	t.Helper()
	t.Cleanup(func() {
		conn, c, done := CleanupConn(t)
		defer done()
		if conn == nil {
			return
		}
		PurgeTasks(t, conn, roles)
		// Its sessions are closed by earlier cleanups (connect's), but the
		// server may not have noticed yet: DROP ROLE would then fail (55006).
		if _, err := conn.Exec(c, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "+
			"WHERE usename = ANY($1) AND backend_type = 'client backend'", roles); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, r := range roles {
			var exists bool
			if err := conn.QueryRow(c, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", r).Scan(&exists); err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
			if !exists {
				continue
			}
			if _, err := conn.Exec(c, fmt.Sprintf("DROP OWNED BY %[1]s CASCADE; DROP ROLE %[1]s", r)); err != nil {
				t.Errorf("cleanup: drop role %s: %v", r, err)
			}
		}
	})
}

// PurgeTasksAtEnd removes every row of roles from lantern.tasks when the
// test ends (a test that queues thousands of tasks must not leave them to
// the tests that follow).
func PurgeTasksAtEnd(t *testing.T, roles ...string) {
	t.Helper()
	t.Cleanup(func() {
		conn, _, done := CleanupConn(t)
		defer done()
		if conn != nil {
			PurgeTasks(t, conn, roles)
		}
	})
}

// PurgeTasks deletes the pending rows of roles, stops their running tasks,
// waits until none runs and then deletes all their rows. Used in cleanups
// only.
func PurgeTasks(t *testing.T, su *pgx.Conn, roles []string) {
	t.Helper()
	c := context.Background()
	var installed bool
	if err := su.QueryRow(c, "SELECT to_regclass('lantern.tasks') IS NOT NULL").Scan(&installed); err != nil || !installed {
		return
	}
	if _, err := su.Exec(c, "DELETE FROM lantern.tasks WHERE username = ANY($1) AND status IS DISTINCT FROM 'running'", roles); err != nil {
		t.Errorf("cleanup: delete tasks of %v: %v", roles, err)
		return
	}
	if _, err := su.Exec(c, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = $1 AND usename = ANY($2)",
		BackendWorker, roles); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	check, stop := Guarded(func() (bool, string) {
		n, err := QueryRows[int64](su, "SELECT jobid FROM lantern.tasks WHERE username = ANY($1) AND status = 'running'", roles)
		return err == nil && len(n) == 0, fmt.Sprintf("running: %v, err=%v", n, err)
	})
	ok := assert.Eventually(t, check, WaitTimeout, Tick, "cleanup: tasks of %v to stop running", roles)
	if last := stop(); !ok {
		t.Errorf("cleanup: %s", last)
	}
	if _, err := su.Exec(c, "DELETE FROM lantern.tasks WHERE username = ANY($1)", roles); err != nil {
		t.Errorf("cleanup: delete tasks of %v: %v", roles, err)
	}
}

// SubmitMany queues n copies of query as the connection's role, in one
// statement, and returns the lowest and highest jobid.
func SubmitMany(t *testing.T, conn QueryRower, query string, n int) (first, last int64) {
	t.Helper()
	require.NoError(t, conn.QueryRow(Ctx(t), `
		SELECT min(id), max(id) FROM (
			SELECT lantern.async_task($1) AS id FROM generate_series(1, $2)) s`, query, n).Scan(&first, &last),
		"submit %d tasks", n)
	require.Equal(t, int64(n-1), last-first, "jobids of %d tasks submitted in one statement", n)
	return first, last
}

// StatusCounts counts the rows of role by status ("<NULL>" for NULL), read
// through su.
func StatusCounts(t *testing.T, su *pgx.Conn, role string) map[string]int {
	t.Helper()
	rows, err := su.Query(Ctx(t), `
		SELECT coalesce(status, '<NULL>'), count(*)::int FROM lantern.tasks
		WHERE username = $1 GROUP BY 1`, role)
	require.NoError(t, err)
	counts := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		require.NoError(t, rows.Scan(&s, &n))
		counts[s] = n
	}
	require.NoError(t, rows.Err())
	return counts
}

// CanceledShape counts, among role's rows, those canceled exactly as
// cancel_task records it: 'Canceled by user', a duration, sqlstate 57014.
func CanceledShape(t *testing.T, su *pgx.Conn, role string) int {
	t.Helper()
	// Fresh statistics first: right after a bulk submit, before autovacuum
	// has looked, the planner takes both tables for tiny and joins 100,000
	// rows by nested loop (15 minutes on a busy machine).
	MustExec(t, su, "ANALYZE lantern.tasks, lantern.task_errors")
	return QueryOne[int](t, su, `
		SELECT count(*)::int FROM lantern.tasks t JOIN lantern.task_errors e USING (jobid)
		WHERE t.username = $1 AND t.status = 'canceled' AND t.error_message = $2
		  AND t.duration IS NOT NULL AND e.sqlstate = '57014'`, role, CanceledMessage)
}

// ExtensionInstalled reports whether pg_extension has lantern_async.
func ExtensionInstalled(t *testing.T, su *pgx.Conn) bool {
	t.Helper()
	return QueryOne[bool](t, su, "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'lantern_async')")
}

// ResetExtensionAtEnd makes the test end with a freshly created extension
// in a schema lantern of its own, whatever the test did to schema lantern:
// it drops the extension and the schemas lantern and lantern_old, then
// re-creates the extension with the test grants. Register it after
// DropRolesAtEnd of the roles that own such schemas, so that it runs
// before it (cleanups run last-registered first).
func ResetExtensionAtEnd(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		conn, c, done := CleanupConn(t)
		defer done()
		if conn == nil {
			return
		}
		for _, q := range []string{
			"DROP EXTENSION IF EXISTS lantern_async CASCADE",
			"DROP SCHEMA IF EXISTS lantern, lantern_old CASCADE",
			"CREATE EXTENSION lantern_async",
		} {
			if _, err := conn.Exec(c, q); err != nil {
				t.Errorf("cleanup: %s: %v", q, err)
				return
			}
		}
		if err := GrantExtensionAccess(c, conn); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}
