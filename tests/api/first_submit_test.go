package api

import (
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// A new backend's first submit (the serverless path, tests/bench row 13)
// inserts the task's row and its owner row in one statement, with the
// session's triggers in replica mode for that statement only: the owner
// row's foreign key would check the task row the same statement inserted,
// and planning that check was the largest part of a first submit's cost.

// riPlans counts the foreign-key checks' saved plans and caches in conn's
// backend (ri_triggers.c keeps them for the life of the process).
func riPlans(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	return testkit.QueryOne[int](t, conn, `SELECT count(*)::int FROM pg_backend_memory_contexts
		WHERE name IN ('RI constraint cache', 'RI query cache')
		   OR (name = 'CachedPlanSource' AND ident LIKE 'SELECT 1 FROM ONLY %')`)
}

// TestFirstSubmitPlansNoForeignKeyCheck: a submit in a new session plans
// no foreign-key check (it planned task_owners' check of lantern.tasks),
// and the owner row it wrote references its task.  As a superuser: only
// one may read pg_backend_memory_contexts on 15.
func TestFirstSubmitPlansNoForeignKeyCheck(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	conn := testkit.Connect(t, testkit.Superuser)

	require.Equal(t, 0, riPlans(t, conn), "a new session has no foreign-key plan")
	id := testkit.Submit(t, conn, "SELECT 1")
	testkit.Submit(t, conn, "SELECT 2")
	require.Equal(t, 0, riPlans(t, conn), "the submits planned a foreign-key check")
	require.Equal(t, 1, testkit.QueryOne[int](t, su, `SELECT count(*)::int FROM lantern.task_owners o
		JOIN lantern.tasks t USING (jobid) WHERE o.jobid = $1`, id), "the owner row references its task")
	testkit.RequireSucceeded(t, conn, id)
}

// TestSubmitLeavesCallerForeignKeysEnforced: after a submit, and after one
// that failed inside its insert (a unique violation of lantern.tasks'
// jobid, the sequence restarted below an existing task), the caller's own
// foreign keys and triggers still fire: replica mode ends with the
// submit's statement, whichever way it ends.
func TestSubmitLeavesCallerForeignKeysEnforced(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "submit_fk")
	testkit.PurgeTasksAtEnd(t, role)
	restoreJobidSequenceAtEnd(t, su)
	conn := testkit.Connect(t, role)
	testkit.MustExec(t, conn, `CREATE TEMP TABLE parent (id int PRIMARY KEY);
		CREATE TEMP TABLE child (pid int REFERENCES parent)`)
	requireEnforced := func(when string) {
		t.Helper()
		require.Equal(t, "origin", testkit.QueryOne[string](t, conn, "SHOW session_replication_role"), when)
		_, err := conn.Exec(testkit.Ctx(t), "INSERT INTO child VALUES (42)")
		testkit.RequirePgError(t, err, "23503", "a row without its parent %s", when)
	}

	id := testkit.Submit(t, conn, "SELECT 1")
	requireEnforced("after a submit")

	reuseJobid := func() { testkit.MustExec(t, su, "SELECT setval('lantern.tasks_jobid_seq', $1, false)", id) }
	reuseJobid()
	_, err := conn.Exec(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1')")
	testkit.RequirePgError(t, err, "23505", "a submit given an existing jobid")
	requireEnforced("after a failed submit")

	reuseJobid()
	tx, err := conn.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	_, err = tx.Exec(testkit.Ctx(t), "SAVEPOINT s; SELECT lantern.async_task('SELECT 1')")
	testkit.RequirePgError(t, err, "23505", "a submit given an existing jobid, in a savepoint")
	_, err = tx.Exec(testkit.Ctx(t), "ROLLBACK TO SAVEPOINT s")
	require.NoError(t, err)
	require.Equal(t, "origin", testkit.QueryOne[string](t, conn, "SHOW session_replication_role"),
		"after a failed submit rolled back to a savepoint")
	_, err = tx.Exec(testkit.Ctx(t), "INSERT INTO child VALUES (42)")
	testkit.RequirePgError(t, err, "23503", "a row without its parent, in the same transaction")
	require.NoError(t, tx.Rollback(testkit.Ctx(t)))
	testkit.RequireSucceeded(t, conn, id)
}
