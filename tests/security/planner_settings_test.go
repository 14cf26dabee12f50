package security

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// TestExtensionStatementsStartNoParallelWorkers: a role may set
// force_parallel_mode (debug_parallel_query from 16 on) for its own
// sessions, and its own queries then start parallel workers. The
// extension's statements, run in those sessions, must not: each would
// start processes from the pool the workers share (max_worker_processes)
// for a statement that reads a few rows. A submit with depends_on reads
// the tasks it names; a cancel reads the task; wait_task lists the open
// cursors.
func TestExtensionStatementsStartNoParallelWorkers(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.DebugServerLog(t, su)
	role := testkit.NewTempRole(t, su, "parallel_role")
	conn := testkit.Connect(t, role)
	setting := testkit.QueryOne[string](t, su,
		"SELECT name FROM pg_settings WHERE name IN ('force_parallel_mode', 'debug_parallel_query')")
	testkit.MustExec(t, conn, fmt.Sprintf("SET %s = on", setting))
	workerLine := fmt.Sprintf(`starting background worker process "parallel worker for PID %d"`, conn.PgConn().PID())
	from := len(testkit.Cluster.Log())

	first := testkit.QueryOne[int64](t, conn, "SELECT lantern.async_task('SELECT 1', run_after => now() + interval '1 hour')")
	second := testkit.QueryOne[int64](t, conn, "SELECT lantern.async_task('SELECT 1', depends_on => ARRAY[$1]::bigint[])", first)
	testkit.RequireCancelTask(t, conn, second, true)
	testkit.RequireCancelTask(t, conn, first, true)
	testkit.MustExec(t, conn, "SELECT lantern.cancel_all_async_tasks()")
	require.Equal(t, "canceled", testkit.QueryOne[string](t, conn, "CALL lantern.wait_task($1, interval '10 s', NULL)", first))

	// The control: the role's own query starts one, and its line comes after
	// any the calls above started.
	testkit.MustExec(t, conn, "SELECT count(*) FROM pg_catalog.pg_class")
	testkit.RequirePoll(t, testkit.WaitTimeout, "the role's own query to start a parallel worker", func() (bool, string) {
		return strings.Contains(testkit.Cluster.Log()[from:], workerLine), "no parallel worker logged yet"
	})
	require.Equal(t, 1, strings.Count(testkit.Cluster.Log()[from:], workerLine),
		"parallel workers started by the backend of a role with %s = on: only its own query's may be", setting)
}
