package tests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Tests that need a server configured differently from the shared one:
// each starts its own cluster.

// startExtraCluster starts an extra cluster with opts, skipping the test when the
// backend cannot do it; the cluster is closed when the test ends.
func startExtraCluster(t *testing.T, opts pgcluster.Options) *pgcluster.Cluster {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	opts.Logf = t.Logf
	extra, err := pgcluster.Start(c, opts)
	require.NoError(t, err, "start an extra cluster")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- extra cluster's server log (last %d lines) ---\n%s", logTailLines, extra.LogTail(logTailLines))
		}
		if err := extra.Close(); err != nil {
			t.Errorf("close the extra cluster: %v", err)
		}
	})
	return extra
}

func TestCreateExtensionWithoutPreload(t *testing.T) {
	begin(t)
	extra := startExtraCluster(t, pgcluster.Options{NoPreload: true})
	conn := connectTo(t, extra, dbName, superuser)
	require.Empty(t, queryOne[string](t, conn, "SHOW shared_preload_libraries"))

	_, err := conn.Exec(ctx(t), "CREATE EXTENSION lantern_async")
	require.Error(t, err, "CREATE EXTENSION lantern_async without shared_preload_libraries")
	t.Logf("refused as psql shows it:\n%s", errorText(err))
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "a server error, got %v", err)
	require.Equal(t, "lantern_async must be loaded via shared_preload_libraries", pgErr.Message)
	require.Contains(t, pgErr.Hint, "shared_preload_libraries")
	require.Equal(t, 0, queryOne[int](t, conn,
		"SELECT count(*)::int FROM pg_extension WHERE extname = 'lantern_async'"))
	require.False(t, queryOne[bool](t, conn, "SELECT to_regnamespace('lantern') IS NOT NULL"),
		"the failed CREATE EXTENSION must leave no schema lantern")
}

func TestMaxWorkersClampedToWorkerProcesses(t *testing.T) {
	begin(t)
	// The harness writes max_worker_processes = 16 before ExtraConf: the
	// later line wins (local), and -c settings later on the command line win
	// (docker).
	// Without logical replication workers, PostgreSQL registers no launcher
	// and the launcher and the tasks have the 3 background worker slots
	// to themselves.
	extra := startExtraCluster(t, pgcluster.Options{MaxWorkers: 8, ExtraConf: []string{
		"max_worker_processes = 3",
		"max_logical_replication_workers = 0",
	}})
	conn := connectTo(t, extra, dbName, superuser)

	require.Equal(t, "3", queryOne[string](t, conn, "SHOW max_worker_processes"))
	require.Equal(t, "2", queryOne[string](t, conn, "SHOW lantern_async.max_workers"),
		"lantern_async.max_workers = 8 lowered to max_worker_processes - 1")
	log := extra.Log()
	require.True(t, strings.Contains(log, "LOG:  lantern_async.max_workers lowered from 8 to 2"),
		"server log must have the LOG line `lantern_async.max_workers lowered from 8 to 2`; log:\n%s", log)

	others := queryOne[int](t, conn, `SELECT count(*)::int FROM pg_stat_activity
		WHERE backend_type NOT IN ('client backend', $1) AND backend_type IN (
			'logical replication launcher', 'logical replication worker', 'parallel worker')`, backendLauncher)
	require.Zero(t, others, "background workers other than lantern_async's")

	// The lowered value is the one in force: three tasks never run more
	// than two at a time, and all of them finish.
	mustExec(t, conn, "CREATE EXTENSION lantern_async")
	// One role each, so that the launcher wants three workers at once.
	var ids []int64
	for _, role := range []string{"r1", "r2", "r3"} {
		mustExec(t, conn, "CREATE ROLE "+role+" LOGIN")
		rc, err := extra.Connect(ctx(t), dbName, role)
		require.NoError(t, err)
		ids = append(ids, submit(t, rc, "SELECT pg_sleep(1.5)"))
		require.NoError(t, rc.Close(ctx(t)))
	}
	maxRunning, maxWorkers := 0, 0
	requirePoll(t, waitTimeout, "the 3 tasks to finish", whileConnected(conn, func() (bool, string) {
		st, workers, err := statusesAndWorkers(conn, ids)
		if err != nil {
			return false, err.Error()
		}
		maxRunning = max(maxRunning, countStatus(st, "running"))
		maxWorkers = max(maxWorkers, workers)
		return allFinal(st), fmt.Sprintf("statuses %v", st)
	}))
	requireSucceeded(t, conn, ids...)
	require.Equal(t, 2, maxRunning, "tasks of three roles running at once with lantern_async.max_workers = 2")
	require.LessOrEqual(t, maxWorkers, 2, "%s processes at once with lantern_async.max_workers = 2", backendWorker)
	t.Logf("at most %d running tasks and %d worker processes seen at once", maxRunning, maxWorkers)
}
