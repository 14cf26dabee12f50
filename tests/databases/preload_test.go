package databases

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Tests that need a server configured differently from the shared one:
// each starts its own cluster.

func TestCreateExtensionWithoutPreload(t *testing.T) {
	testkit.Begin(t)
	extra := testkit.StartExtraCluster(t, pgcluster.Options{NoPreload: true})
	conn := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
	require.Empty(t, testkit.QueryOne[string](t, conn, "SHOW shared_preload_libraries"))

	_, err := conn.Exec(testkit.Ctx(t), "CREATE EXTENSION lantern_async")
	require.Error(t, err, "CREATE EXTENSION lantern_async without shared_preload_libraries")
	t.Logf("refused as psql shows it:\n%s", testkit.ErrorText(err))
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "a server error, got %v", err)
	require.Equal(t, "lantern_async must be loaded via shared_preload_libraries", pgErr.Message)
	require.Contains(t, pgErr.Hint, "shared_preload_libraries")
	require.Equal(t, 0, testkit.QueryOne[int](t, conn,
		"SELECT count(*)::int FROM pg_extension WHERE extname = 'lantern_async'"))
	require.False(t, testkit.QueryOne[bool](t, conn, "SELECT to_regnamespace('lantern') IS NOT NULL"),
		"the failed CREATE EXTENSION must leave no schema lantern")
}

func TestMaxWorkersClampedToWorkerProcesses(t *testing.T) {
	testkit.Begin(t)
	// The harness writes max_worker_processes = 16 before ExtraConf: the
	// later line wins (local), and -c settings later on the command line win
	// (docker).
	// Without logical replication workers, PostgreSQL registers no launcher
	// and the launcher and the tasks have the 3 background worker slots
	// to themselves.
	extra := testkit.StartExtraCluster(t, pgcluster.Options{MaxWorkers: 8, ExtraConf: []string{
		"max_worker_processes = 3",
		"max_logical_replication_workers = 0",
	}})
	conn := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)

	require.Equal(t, "3", testkit.QueryOne[string](t, conn, "SHOW max_worker_processes"))
	require.Equal(t, "2", testkit.QueryOne[string](t, conn, "SHOW lantern_async.max_workers"),
		"lantern_async.max_workers = 8 lowered to max_worker_processes - 1")
	log := extra.Log()
	require.True(t, strings.Contains(log, "LOG:  lantern_async.max_workers lowered from 8 to 2"),
		"server log must have the LOG line `lantern_async.max_workers lowered from 8 to 2`; log:\n%s", log)

	others := testkit.QueryOne[int](t, conn, `SELECT count(*)::int FROM pg_stat_activity
		WHERE backend_type NOT IN ('client backend', $1) AND backend_type IN (
			'logical replication launcher', 'logical replication worker', 'parallel worker')`, testkit.BackendLauncher)
	require.Zero(t, others, "background workers other than lantern_async's")

	// The lowered value is the one in force: three tasks never run more
	// than two at a time, and all of them finish.
	testkit.MustExec(t, conn, "CREATE EXTENSION lantern_async")
	// One role each, so that the launcher wants three workers at once.
	var ids []int64
	for _, role := range []string{"r1", "r2", "r3"} {
		testkit.MustExec(t, conn, "CREATE ROLE "+role+" LOGIN")
		rc, err := extra.Connect(testkit.Ctx(t), testkit.DBName, role)
		require.NoError(t, err)
		ids = append(ids, testkit.Submit(t, rc, "SELECT pg_sleep(1.5)"))
		require.NoError(t, rc.Close(testkit.Ctx(t)))
	}
	maxRunning, maxWorkers := 0, 0
	testkit.RequirePoll(t, testkit.WaitTimeout, "the 3 tasks to finish", testkit.WhileConnected(conn, func() (bool, string) {
		st, workers, err := testkit.StatusesAndWorkers(conn, ids)
		if err != nil {
			return false, err.Error()
		}
		maxRunning = max(maxRunning, testkit.CountStatus(st, "running"))
		maxWorkers = max(maxWorkers, workers)
		return testkit.AllFinal(st), fmt.Sprintf("statuses %v", st)
	}))
	testkit.RequireSucceeded(t, conn, ids...)
	require.Equal(t, 2, maxRunning, "tasks of three roles running at once with lantern_async.max_workers = 2")
	require.LessOrEqual(t, maxWorkers, 2, "%s processes at once with lantern_async.max_workers = 2", testkit.BackendWorker)
	t.Logf("at most %d running tasks and %d worker processes seen at once", maxRunning, maxWorkers)
}
