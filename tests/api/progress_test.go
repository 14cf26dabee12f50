package api

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// lantern.task_progress (README "Progress"): one row per running task the
// caller may see, joined to PostgreSQL's progress views through the
// worker's pid, which comes from the slots, not from application_name.

type progressRow struct {
	jobid       int64
	pid         int
	command     *string
	phase       *string
	done, total *int64
	percent     *float64
	elapsed     time.Duration
}

func readProgress(conn testkit.QueryRower, jobid int64) (progressRow, bool, error) {
	var r progressRow
	var elapsed float64
	err := conn.QueryRow(context.Background(), `
		SELECT jobid, pid, command, phase, work_done, work_total, percent::float8,
		       extract(epoch FROM elapsed)::float8
		FROM lantern.task_progress WHERE jobid = $1`, jobid).
		Scan(&r.jobid, &r.pid, &r.command, &r.phase, &r.done, &r.total, &r.percent, &elapsed)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	r.elapsed = time.Duration(elapsed * float64(time.Second))
	return r, err == nil, err
}

// TestTaskProgressOfAnIndexBuild: while a CREATE INDEX task runs, its row
// shows the command, a phase and work done out of a total, from the
// worker's own process; another role sees no row for it.
func TestTaskProgressOfAnIndexBuild(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("progress"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s AS SELECT md5(g::text) AS v FROM generate_series(1, 1000000) g", tbl))
	t.Cleanup(func() { _ = testkit.Cluster.Exec(context.Background(), testkit.DBName, "DROP TABLE IF EXISTS "+tbl) })
	other := testkit.Connect(t, testkit.NewTempRole(t, su, "progress_other"))

	id := testkit.Submit(t, su, fmt.Sprintf("SET maintenance_work_mem = '1MB'; SET max_parallel_maintenance_workers = 0; CREATE INDEX ON %s (v)", tbl))
	var seen progressRow
	var sawRunning bool
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("task %d in task_progress with CREATE INDEX progress", id), testkit.WhileConnected(su, func() (bool, string) {
		r, ok, err := readProgress(su, id)
		if err != nil {
			return false, err.Error()
		}
		if !ok {
			return false, "no row"
		}
		sawRunning = true
		if r.command != nil && r.total != nil && *r.total > 0 && r.percent != nil {
			seen = r
			return true, "progress"
		}
		return false, fmt.Sprintf("command %q, total %d, percent %.1f", testkit.Deref(r.command), testkit.Deref(r.total), testkit.Deref(r.percent))
	}))
	require.True(t, sawRunning)
	t.Logf("task %d: pid %d, %s, phase %q, %d of %d (%.1f %%)", id, seen.pid, *seen.command, testkit.Deref(seen.phase), testkit.Deref(seen.done), *seen.total, *seen.percent)
	require.Equal(t, "CREATE INDEX", *seen.command)
	require.Contains(t, testkit.Deref(seen.phase), "building index")
	require.GreaterOrEqual(t, *seen.percent, 0.0)
	require.LessOrEqual(t, *seen.percent, 100.0)
	require.Equal(t, fmt.Sprintf("lantern_async task %d", id),
		testkit.QueryOne[string](t, su, "SELECT application_name FROM pg_stat_activity WHERE pid = $1", seen.pid),
		"a running task's application_name names its jobid")
	_, visible, err := readProgress(other, id)
	require.NoError(t, err)
	require.False(t, visible, "another role's task is not in its task_progress")
	require.Zero(t, testkit.QueryOne[int64](t, other, "SELECT count(*) FROM lantern.running_tasks() WHERE jobid = $1", id))

	testkit.RequireSucceeded(t, su, id)
	_, visible, err = readProgress(su, id)
	require.NoError(t, err)
	require.False(t, visible, "a finished task has no progress row")
}

// A session that names itself after a task does not become that task's
// process: task_progress reads the slots.
func TestTaskProgressIgnoresApplicationName(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	lock := testkit.HoldAdvisoryLock(t)
	id := testkit.Submit(t, su, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{id})

	impostor := testkit.Connect(t, testkit.Superuser)
	testkit.MustExec(t, impostor, fmt.Sprintf("SET application_name = 'lantern_async task %d'", id))
	impostorPid := testkit.QueryOne[int](t, impostor, "SELECT pg_backend_pid()")
	r, ok, err := readProgress(su, id)
	require.NoError(t, err)
	require.True(t, ok)
	require.NotEqual(t, impostorPid, r.pid)
	require.Equal(t, testkit.BackendWorker, testkit.QueryOne[string](t, su, "SELECT backend_type FROM pg_stat_activity WHERE pid = $1", r.pid))
	require.Nil(t, r.command, "waiting on a lock reports no progress")
	require.Positive(t, r.elapsed, "elapsed since the claim")
	require.Less(t, r.elapsed, time.Minute)

	lock.Release(t)
	testkit.RequireSucceeded(t, su, id)
	// Between tasks the worker's application_name is the role's own again.
	// (A worker that has left since has no name left either.)
	testkit.RequirePoll(t, testkit.WaitTimeout, "the idle worker's application_name is reset", testkit.WhileConnected(su, func() (bool, string) {
		var name *string
		err := su.QueryRow(context.Background(), "SELECT application_name FROM pg_stat_activity WHERE pid = $1", r.pid).Scan(&name)
		if errors.Is(err, pgx.ErrNoRows) {
			return true, "the worker exited"
		}
		if err != nil {
			return false, err.Error()
		}
		return testkit.Deref(name) == "", fmt.Sprintf("application_name %q", testkit.Deref(name))
	}))
}
