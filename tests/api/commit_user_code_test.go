package api

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// What a task's COMMIT runs of its own code: a WITH
// HOLD cursor's query is run to its end at COMMIT (PostgreSQL persists the
// cursor then), and what that query queues (deferred constraint triggers)
// fires then too. The task's time limit and cancel_task() cover it as they
// cover every statement: the task's point of no return comes after it.
// README, "Timeouts" and "Cancel".

// heldCursorQuery is a task string whose COMMIT runs pg_sleep(seconds)
// through a WITH HOLD cursor; block wraps it in BEGIN ... COMMIT, otherwise
// the DECLARE is the string's only statement (its implicit transaction).
func heldCursorQuery(seconds int, block bool) string {
	declare := fmt.Sprintf("DECLARE c CURSOR WITH HOLD FOR SELECT pg_sleep(%d)", seconds)
	if block {
		return "BEGIN; " + declare + "; COMMIT"
	}
	return declare
}

// waitWorkerSleeping waits until a worker of role sleeps in pg_sleep.
func waitWorkerSleeping(t *testing.T, su *pgx.Conn, role string) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, "a worker of "+role+" in pg_sleep", testkit.WhileConnected(su, func() (bool, string) {
		pids, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1 AND usename = $2 AND wait_event = 'PgSleep'", testkit.BackendWorker, role)
		return err == nil && len(pids) == 1, fmt.Sprintf("sleeping workers %v, err=%v", pids, err)
	}))
}

// TestTaskTimeoutCoversHeldCursor: a task whose COMMIT materialises a
// held cursor over pg_sleep(8) is stopped by its 2 s limit (repeated every
// second): failed, 57014, the timeout's message, well before the 8 s sleep
// ends. Before, the limit was disarmed before COMMIT: 8 s and succeeded.
func TestTaskTimeoutCoversHeldCursor(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	for _, block := range []bool{true, false} {
		query := heldCursorQuery(8, block)
		id := testkit.SubmitWithTimeout(t, alice, query, testkit.Ptr("2 s"))
		msg := testkit.RequireFailedWithSQLState(t, alice, id, "57014")
		require.True(t, strings.HasPrefix(msg, testkit.PerTaskTimeoutMessage("00:00:02")), "task %q: %s", query, msg)
		testkit.RequireStoppedWithin(t, id, 6*time.Second)
	}
}

// TestCancelTaskCoversHeldCursor: cancel_task() while the task's COMMIT
// materialises a held cursor returns true and the task ends canceled.
// Before, the task was past its point of no return: false, succeeded.
func TestCancelTaskCoversHeldCursor(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "held_cursor_cancel")
	conn := testkit.Connect(t, role)
	id := testkit.Submit(t, conn, heldCursorQuery(8, true))
	waitWorkerSleeping(t, su, role)
	start := time.Now()
	testkit.RequireCancelTask(t, conn, id, true)
	testkit.RequireCanceled(t, conn, id, "57014")
	require.Less(t, time.Since(start), 5*time.Second, "the cancel stops the cursor's pg_sleep(8)")
}

// TestCancelTaskCoversTriggerQueuedAtCommit: the held cursor's query
// inserts into a table with a deferred constraint trigger that sleeps; the
// trigger is queued while COMMIT materialises the cursor and fires in the
// same COMMIT. cancel_task() while it sleeps returns true, the task ends
// canceled and nothing it wrote is committed. Before: false, succeeded.
func TestCancelTaskCoversTriggerQueuedAtCommit(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "commit_trigger_cancel")
	testkit.MustExec(t, su, fmt.Sprintf("GRANT CREATE ON SCHEMA public TO %s", role))
	conn := testkit.Connect(t, role)
	tbl := testkit.Ident(t, testkit.Uniq("commit_trigger_t"))
	testkit.MustExec(t, conn, fmt.Sprintf(`
		CREATE TABLE %[1]s(a int);
		CREATE FUNCTION %[1]s_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(8); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON %[1]s DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW EXECUTE FUNCTION %[1]s_slow();
		CREATE FUNCTION %[1]s_add() RETURNS int LANGUAGE sql AS $$ INSERT INTO %[1]s VALUES (1) RETURNING a $$;`, tbl))
	id := testkit.Submit(t, conn, fmt.Sprintf("BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT %s_add(); COMMIT", tbl))
	waitWorkerSleeping(t, su, role)
	start := time.Now()
	testkit.RequireCancelTask(t, conn, id, true)
	testkit.RequireCanceled(t, conn, id, "57014")
	require.Less(t, time.Since(start), 5*time.Second, "the cancel stops the trigger's pg_sleep(8)")
	require.Equal(t, 0, testkit.QueryOne[int](t, conn, fmt.Sprintf("SELECT count(*)::int FROM %s", tbl)), "a canceled task commits nothing")
}

// TestHeldCursorTaskSucceeds: within its limit, a task that leaves a held
// cursor (and a temporary table dropped at commit) succeeds, and what its
// cursor's query wrote is committed with it.
func TestHeldCursorTaskSucceeds(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "held_cursor_ok")
	testkit.MustExec(t, su, fmt.Sprintf("GRANT CREATE ON SCHEMA public TO %s", role))
	conn := testkit.Connect(t, role)
	tbl := testkit.Ident(t, testkit.Uniq("held_cursor_ok_t"))
	testkit.MustExec(t, conn, fmt.Sprintf(`
		CREATE TABLE %[1]s(a int);
		CREATE FUNCTION %[1]s_add() RETURNS int LANGUAGE sql AS $$ INSERT INTO %[1]s VALUES (1) RETURNING a $$;`, tbl))
	id := testkit.SubmitWithTimeout(t, conn, fmt.Sprintf(
		"BEGIN; CREATE TEMP TABLE scratch(a int) ON COMMIT DROP; DECLARE c CURSOR WITH HOLD FOR SELECT %s_add(), pg_sleep(0.2); COMMIT", tbl), testkit.Ptr("1 min"))
	testkit.RequireSucceeded(t, conn, id)
	require.Equal(t, 1, testkit.QueryOne[int](t, conn, fmt.Sprintf("SELECT count(*)::int FROM %s", tbl)), "the cursor's insert commits with the task")
}

// TestTaskTimeoutCoversTriggerQueuedAtCommit: the held cursor's query
// queues a deferred constraint trigger that sleeps 8 s at COMMIT; the
// task's 2 s limit stops it: failed, 57014, nothing committed. Before,
// the trigger fired after the limit was disarmed: succeeded after 8 s.
func TestTaskTimeoutCoversTriggerQueuedAtCommit(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "commit_trigger_timeout")
	testkit.MustExec(t, su, fmt.Sprintf("GRANT CREATE ON SCHEMA public TO %s", role))
	conn := testkit.Connect(t, role)
	tbl := testkit.Ident(t, testkit.Uniq("commit_trigger_timeout_t"))
	testkit.MustExec(t, conn, fmt.Sprintf(`
		CREATE TABLE %[1]s(a int);
		CREATE FUNCTION %[1]s_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(8); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON %[1]s DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW EXECUTE FUNCTION %[1]s_slow();
		CREATE FUNCTION %[1]s_add() RETURNS int LANGUAGE sql AS $$ INSERT INTO %[1]s VALUES (1) RETURNING a $$;`, tbl))
	id := testkit.SubmitWithTimeout(t, conn, fmt.Sprintf("DECLARE c CURSOR WITH HOLD FOR SELECT %s_add()", tbl), testkit.Ptr("2 s"))
	msg := testkit.RequireFailedWithSQLState(t, conn, id, "57014")
	require.True(t, strings.HasPrefix(msg, testkit.PerTaskTimeoutMessage("00:00:02")), msg)
	testkit.RequireStoppedWithin(t, id, 6*time.Second)
	require.Equal(t, 0, testkit.QueryOne[int](t, conn, fmt.Sprintf("SELECT count(*)::int FROM %s", tbl)), "a stopped task commits nothing")
}
