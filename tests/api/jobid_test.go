package api

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Jobids are positive: the workers' shared memory uses 0 for "no task",
// and no jobid means "every task" (README, "What is trusted, and why").

// restoreJobidSequenceAtEnd deletes the rows with a jobid below 1 and
// restarts lantern.tasks_jobid_seq (MINVALUE 1) above every jobid it gave
// or that exists, when the test ends.
func restoreJobidSequenceAtEnd(t *testing.T, su *pgx.Conn) {
	t.Helper()
	last := testkit.QueryOne[int64](t, su, "SELECT last_value FROM lantern.tasks_jobid_seq")
	t.Cleanup(func() {
		testkit.CleanupExec(t, "DELETE FROM lantern.tasks WHERE jobid < 1")
		testkit.CleanupExec(t, fmt.Sprintf(`DO $$ BEGIN EXECUTE format('ALTER SEQUENCE lantern.tasks_jobid_seq MINVALUE 1 RESTART WITH %%s',
			greatest(%d, (SELECT max(jobid) FROM lantern.tasks)) + 1); END $$`, last))
	})
}

// TestAsyncTaskRefusesNonPositiveJobid: a jobid sequence restarted at 0
// (legal for a superuser: MINVALUE 0) makes async_task fail with 2200H and
// a hint saying how to restart the sequence, instead of queueing task 0.
func TestAsyncTaskRefusesNonPositiveJobid(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "jobid_zero")
	conn := testkit.Connect(t, role)
	// No worker may claim a task 0 that a broken build would queue.
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	restoreJobidSequenceAtEnd(t, su)

	testkit.MustExec(t, su, "ALTER SEQUENCE lantern.tasks_jobid_seq MINVALUE 0 RESTART WITH 0")
	var id int64
	err := conn.QueryRow(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1')").Scan(&id)
	pgErr := testkit.RequirePgError(t, err, "2200H", "async_task with the jobid sequence at 0 (returned jobid %d)", id)
	require.Contains(t, pgErr.Message, "not positive")
	require.Contains(t, pgErr.Hint, "ALTER SEQUENCE lantern.tasks_jobid_seq MINVALUE 1 RESTART")
	require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid < 1"), "no task 0 was queued")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}

// plantTask inserts, as a superuser writing the tables directly, a pending
// task of role with jobid id (what async_task queued before jobids had to
// be positive).
func plantTask(t *testing.T, su *pgx.Conn, role string, id int64) {
	t.Helper()
	testkit.MustExec(t, su, `
		WITH t AS (INSERT INTO lantern.tasks (jobid, query, username, status) VALUES ($1, 'SELECT 1', $2, 'pending'))
		INSERT INTO lantern.task_owners (jobid, roleid, datid)
		SELECT $1, oid, (SELECT oid FROM pg_database WHERE datname = current_database()) FROM pg_roles WHERE rolname = $2`, id, role)
}

// TestCancelTaskOfNonPositiveJobidTouchesNoOtherTask: cancel_task(0) and
// cancel_task(-1), even by the owner of such a task, cancel that task
// only: another role's pending task and the caller's other task stay
// pending.
func TestCancelTaskOfNonPositiveJobidTouchesNoOtherTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.NewTempRole(t, su, "jobid_cancel_a")
	bob := testkit.NewTempRole(t, su, "jobid_cancel_b")
	testkit.PurgeTasksAtEnd(t, alice, bob)
	aconn, bconn := testkit.Connect(t, alice), testkit.Connect(t, bob)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	restoreJobidSequenceAtEnd(t, su)
	bobTask := testkit.Submit(t, bconn, "SELECT 1")
	aliceTask := testkit.Submit(t, aconn, "SELECT 1")
	plantTask(t, su, alice, 0)
	plantTask(t, su, alice, -1)

	for _, id := range []int64{0, -1} {
		ok, err := testkit.CancelTask(aconn, id)
		require.NoError(t, err, "cancel_task(%d)", id)
		require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, bobTask).Status), "another role's pending task %d after cancel_task(%d)", bobTask, id)
		require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, aliceTask).Status), "the caller's other pending task %d after cancel_task(%d)", aliceTask, id)
		require.True(t, testkit.Deref(ok), "cancel_task(%d) of the caller's pending task %d", id, id)
		require.Equal(t, "canceled", testkit.Deref(testkit.GetTask(t, su, id).Status), "task %d", id)
	}
	st, err := testkit.StatusesOf(su, blockers)
	require.NoError(t, err)
	require.Equal(t, len(blockers), testkit.CountStatus(st, "running"), "the blockers keep running: %v", st)

	testkit.MustExec(t, su, "DELETE FROM lantern.tasks WHERE jobid < 1")
	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	testkit.RequireSucceeded(t, su, bobTask, aliceTask)
}
