package timeouts

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// Task timeouts: lantern_async.task_timeout, set for a role, a
// database or the server, and a task's own timeout (the third argument of
// lantern.async_task()), stop a task that runs longer, across all of its
// transactions; it ends failed, 57014, with a message that says so. README,
// "Timeouts". (statement_timeout in tasks: timeout_test.go and
// timeout_psql_test.go.)

// taskTimeoutMessage is the whole error_message of a task stopped by
// lantern_async.task_timeout = limit (as an interval reads: "00:00:01")
// while in a statement that reports no context.
func taskTimeoutMessage(limit string) string {
	return testkit.MsgTaskTimeout + "\n" +
		"DETAIL:  The task ran for longer than its time limit of " + limit + " (lantern_async.task_timeout).\n" +
		"HINT:  Raise lantern_async.task_timeout for the role or the database, " +
		"or give the task a timeout of its own in lantern.async_task()."
}

// TestTaskTimeoutSetting: the GUC takes units like statement_timeout
// (milliseconds), defaults to 0 and can be set by any role in its session.
func TestTaskTimeoutSetting(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	var unit, gucContext, boot string
	require.NoError(t, su.QueryRow(testkit.Ctx(t), `SELECT unit, context, boot_val FROM pg_settings
		WHERE name = 'lantern_async.task_timeout'`).Scan(&unit, &gucContext, &boot))
	require.Equal(t, []string{"ms", "user", "0"}, []string{unit, gucContext, boot})

	alice := testkit.Connect(t, "alice")
	require.Equal(t, "0", testkit.QueryOne[string](t, alice, "SHOW lantern_async.task_timeout"))
	for set, shown := range map[string]string{"'10min'": "10min", "'2h'": "2h", "1500": "1500ms", "'1s'": "1s", "0": "0"} {
		testkit.MustExec(t, alice, "SET lantern_async.task_timeout = "+set)
		require.Equal(t, shown, testkit.QueryOne[string](t, alice, "SHOW lantern_async.task_timeout"), "SET lantern_async.task_timeout = %s", set)
	}
	_, err := alice.Exec(testkit.Ctx(t), "SET lantern_async.task_timeout = '-1s'")
	testkit.RequirePgError(t, err, "22023", "a negative lantern_async.task_timeout")
}

// TestTaskTimeoutPerRole: ALTER ROLE ... SET lantern_async.task_timeout
// stops that role's long task (failed, 57014, the whole message); its
// short task, and another role's task as long as the limit, succeed.
func TestTaskTimeoutPerRole(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_role")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '1s'", role))
	other := testkit.NewTempRole(t, su, "task_timeout_other")
	conn := testkit.Connect(t, role)
	otherConn := testkit.Connect(t, other)

	long := testkit.Submit(t, conn, "SELECT pg_sleep(30)")
	short := testkit.Submit(t, conn, "SELECT pg_sleep(0.2)")
	unlimited := testkit.Submit(t, otherConn, "SELECT pg_sleep(1.5)")
	msg := testkit.RequireFailedWithSQLState(t, conn, long, "57014")
	require.Equal(t, taskTimeoutMessage("00:00:01"), msg)
	testkit.RequireStoppedWithin(t, long, 20*time.Second)
	testkit.RequireSucceeded(t, conn, short)
	testkit.RequireSucceeded(t, otherConn, unlimited)
}

// TestTaskTimeoutPerDatabase: ALTER DATABASE ... SET
// lantern_async.task_timeout applies to the tasks of that database only.
func TestTaskTimeoutPerDatabase(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	db := testkit.NewExtensionDatabase(t, su, "task_timeout_db")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER DATABASE %s SET lantern_async.task_timeout = '1500ms'", db))
	conn := testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	id := testkit.Submit(t, conn, "SELECT pg_sleep(30)")
	require.Equal(t, taskTimeoutMessage("00:00:01.5"), testkit.RequireFailed(t, conn, id))

	// The same task elsewhere has no limit; alice has none of her own.
	alice := testkit.Connect(t, "alice")
	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT pg_sleep(2)"))
}

// TestTaskTimeoutFromConfig: lantern_async.task_timeout in
// postgresql.conf (ALTER SYSTEM, reload) applies to every role, unless the
// role or the task says otherwise.
func TestTaskTimeoutFromConfig(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_conf")
	exempt := testkit.NewTempRole(t, su, "task_timeout_exempt")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = 0", exempt))
	setSystemAtEnd(t, "lantern_async.task_timeout", "1s", "0")
	conn := testkit.Connect(t, role)
	exemptConn := testkit.Connect(t, exempt)

	over := testkit.Submit(t, conn, "SELECT pg_sleep(30)")
	own := testkit.SubmitWithTimeout(t, conn, "SELECT pg_sleep(1.5)", testkit.Ptr("1 min"))
	free := testkit.Submit(t, exemptConn, "SELECT pg_sleep(1.5)")
	require.Equal(t, taskTimeoutMessage("00:00:01"), testkit.RequireFailed(t, conn, over))
	testkit.RequireSucceeded(t, conn, own)
	testkit.RequireSucceeded(t, exemptConn, free)
}

// TestTaskTimeoutPerTask: the third argument of lantern.async_task() is
// the task's own limit, stored in lantern.task_owners.timeout: it
// overrides the role's setting both ways (shorter and longer), and NULL
// leaves the setting in force.
func TestTaskTimeoutPerTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_own")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '1s'", role))
	conn := testkit.Connect(t, role)

	longer := testkit.SubmitWithTimeout(t, conn, "SELECT pg_sleep(2)", testkit.Ptr("1 min"))
	shorter := testkit.SubmitWithTimeout(t, conn, "SELECT pg_sleep(30)", testkit.Ptr("500 ms"))
	byName := testkit.QueryOne[int64](t, conn, "SELECT lantern.async_task('SELECT pg_sleep(30)', 'named', timeout => '0.75 s')")
	setting := testkit.SubmitWithTimeout(t, conn, "SELECT pg_sleep(30)", nil)
	require.Equal(t, []string{"00:01:00", "00:00:00.5", "00:00:00.75", "<NULL>"},
		testkit.QueryAll[string](t, conn, `SELECT coalesce(timeout::text, '<NULL>') FROM lantern.task_owners
			WHERE jobid = ANY ($1) ORDER BY jobid`, []int64{longer, shorter, byName, setting}),
		"lantern.task_owners.timeout, visible to the submitter")

	testkit.RequireSucceeded(t, conn, longer)
	require.Equal(t, testkit.PerTaskTimeoutMessage("00:00:00.5"), testkit.RequireFailedWithSQLState(t, conn, shorter, "57014"))
	require.Equal(t, testkit.PerTaskTimeoutMessage("00:00:00.75"), testkit.RequireFailed(t, conn, byName))
	require.Equal(t, taskTimeoutMessage("00:00:01"), testkit.RequireFailed(t, conn, setting))

	// A role without a setting: the task's own limit alone; days count 24 h.
	alice := testkit.Connect(t, "alice")
	testkit.RequireSucceeded(t, alice, testkit.SubmitWithTimeout(t, alice, "SELECT pg_sleep(0.2)", testkit.Ptr("1 day 2 hours")))
	id := testkit.SubmitWithTimeout(t, alice, "SELECT pg_sleep(30)", testkit.Ptr("1 s"))
	require.Equal(t, testkit.PerTaskTimeoutMessage("00:00:01"), testkit.RequireFailed(t, alice, id))
}

// TestTaskTimeoutRefusesNonPositive: a timeout of zero or less is an
// error (22023) and queues nothing; NULL is the setting's.
func TestTaskTimeoutRefusesNonPositive(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_bad")
	conn := testkit.Connect(t, role)
	for _, bad := range []string{"0", "-1 s", "1 mon -30 days", "-1 day 23:59:59"} {
		_, err := conn.Exec(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1', NULL, $1::interval)", bad)
		e := testkit.RequirePgError(t, err, "22023", "timeout %q", bad)
		require.Equal(t, "timeout must be positive", e.Message)
		require.Equal(t, "Pass NULL to use lantern_async.task_timeout instead.", e.Hint)
	}
	require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = $1", role))
	// The smallest positive one is accepted; a huge one is no limit in practice.
	testkit.RequireSucceeded(t, conn, testkit.SubmitWithTimeout(t, conn, "SELECT 1", testkit.Ptr("178000000 years")))
	id := testkit.SubmitWithTimeout(t, conn, "SELECT pg_sleep(30)", testkit.Ptr("1 microsecond"))
	require.Equal(t, testkit.PerTaskTimeoutMessage("00:00:00.000001"), testkit.RequireFailed(t, conn, id))
}

// TestTaskTimeoutSpansTransactions: the limit is for the whole string,
// not for each transaction or statement: every statement of these strings
// is well within the limit, and the string as a whole is not. What the
// string committed before the limit passed stays committed.
func TestTaskTimeoutSpansTransactions(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_xacts")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '2500ms'", role))
	marker := testkit.MarkerTable(t, su, "task_timeout_xacts", role)
	conn := testkit.Connect(t, role)

	var parts []string
	for i := 1; i <= 6; i++ {
		parts = append(parts, fmt.Sprintf("INSERT INTO %s VALUES (%d); COMMIT; SELECT pg_sleep(1)", marker, i))
	}
	commits := testkit.Submit(t, conn, strings.Join(parts, "; "))
	blocks := testkit.Submit(t, conn, "BEGIN; SELECT pg_sleep(1); COMMIT; BEGIN; SELECT pg_sleep(1); COMMIT; "+
		"BEGIN; SELECT pg_sleep(1); COMMIT; BEGIN; SELECT pg_sleep(1); COMMIT")
	require.Equal(t, taskTimeoutMessage("00:00:02.5"), testkit.RequireFailedWithSQLState(t, conn, commits, "57014"))
	testkit.RequireStoppedWithin(t, commits, 5*time.Second)
	require.Equal(t, taskTimeoutMessage("00:00:02.5"), testkit.RequireFailed(t, conn, blocks))

	got := testkit.MarkerValues(t, marker)
	require.NotEmpty(t, got)
	require.Less(t, len(got), 6, "the string was stopped before its end")
	for i, v := range got {
		require.Equal(t, i+1, v, "the transactions committed before the limit passed: %v", got)
	}
}

// TestTaskTimeoutCaughtCancel: the limit's cancel can be caught (as
// statement_timeout's can), but it comes again every second until the
// task ends, and a task that catches it and ends anyway fails with the
// timeout all the same: its work does not commit.
func TestTaskTimeoutCaughtCancel(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_caught")
	marker := testkit.MarkerTable(t, su, "task_timeout_caught", role)
	conn := testkit.Connect(t, role)

	again := testkit.SubmitWithTimeout(t, conn, fmt.Sprintf(`DO $$ BEGIN
		BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN INSERT INTO %[1]s VALUES (1); END;
		INSERT INTO %[1]s VALUES (2); PERFORM pg_sleep(30); END $$`, marker), testkit.Ptr("500 ms"))
	msg := testkit.RequireFailedWithSQLState(t, conn, again, "57014")
	require.True(t, strings.HasPrefix(msg, testkit.PerTaskTimeoutMessage("00:00:00.5")+"\nCONTEXT:  "), "error_message: %s", msg)
	testkit.RequireStoppedWithin(t, again, 10*time.Second)

	ended := testkit.SubmitWithTimeout(t, conn, fmt.Sprintf(`DO $$ BEGIN
		PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN INSERT INTO %s VALUES (3); END $$`, marker), testkit.Ptr("500 ms"))
	require.Equal(t, testkit.PerTaskTimeoutMessage("00:00:00.5"), testkit.RequireFailedWithSQLState(t, conn, ended, "57014"))
	require.Empty(t, testkit.MarkerValues(t, marker), "the work of a task stopped by its limit does not commit")
}

// TestTaskTimeoutCreateIndexConcurrently: a CREATE INDEX CONCURRENTLY on
// a slow expression (it commits several times on its own) is stopped by
// the task's limit, as pg_cancel_backend() would stop it: the index is
// left invalid, and the error keeps the context of where it was.
func TestTaskTimeoutCreateIndexConcurrently(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewCreatorRole(t, su, "task_timeout_cic")
	testkit.DropRolesAtEnd(t, role)
	conn := testkit.Connect(t, role)
	tbl := testkit.Ident(t, testkit.Uniq("task_timeout_cic_t"))
	idx := tbl + "_slow_idx"
	testkit.MustExec(t, conn, fmt.Sprintf(`
		CREATE FUNCTION %[1]s_slow(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE
			AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN i; END $$;
		CREATE TABLE %[1]s AS SELECT g AS a FROM generate_series(1, 400) g`, tbl))

	id := testkit.SubmitWithTimeout(t, conn, fmt.Sprintf("CREATE INDEX CONCURRENTLY %s ON %s (%s_slow(a))", idx, tbl, tbl), testkit.Ptr("2 s"))
	msg := testkit.RequireFailedWithSQLState(t, conn, id, "57014")
	require.True(t, strings.HasPrefix(msg, testkit.PerTaskTimeoutMessage("00:00:02")+"\nCONTEXT:  "), "error_message: %s", msg)
	require.Contains(t, msg, "_slow(integer)")
	testkit.RequireStoppedWithin(t, id, 10*time.Second)
	require.False(t, testkit.QueryOne[bool](t, su, "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass", idx),
		"the index a stopped CREATE INDEX CONCURRENTLY leaves is invalid")

	// Within its limit the same build succeeds.
	small := testkit.Ident(t, testkit.Uniq("task_timeout_cic_small"))
	testkit.MustExec(t, conn, fmt.Sprintf("CREATE TABLE %s AS SELECT g AS a FROM generate_series(1, 5) g", small))
	testkit.RequireSucceeded(t, conn, testkit.SubmitWithTimeout(t, conn,
		fmt.Sprintf("CREATE INDEX CONCURRENTLY %s_idx ON %s (%s_slow(a))", small, small, tbl), testkit.Ptr("1 min")))
	require.True(t, testkit.QueryOne[bool](t, su, "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass", small+"_idx"))
}

// TestTaskTimeoutWithinLimit: tasks that end within their limit succeed
// and commit, and the timer ends with the task: the next task the same
// worker runs, with no limit, runs longer than the previous one's limit.
// All slots but one are busy and the tasks are committed together, so one
// worker runs them all (checked with pg_backend_pid).
func TestTaskTimeoutWithinLimit(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_within")
	conn := testkit.Connect(t, role)
	marker := testkit.MarkerTable(t, su, "task_timeout_within", role)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)

	tx := testkit.BeginHeld(t, conn)
	ids := []int64{
		testkit.SubmitWithTimeout(t, conn, fmt.Sprintf("INSERT INTO %s SELECT pg_backend_pid()", marker), testkit.Ptr("1 s")),
		testkit.SubmitWithTimeout(t, conn, fmt.Sprintf("SELECT pg_sleep(0.3); INSERT INTO %s SELECT pg_backend_pid()", marker), testkit.Ptr("1 s")),
		testkit.Submit(t, conn, fmt.Sprintf("SELECT pg_sleep(1.5); INSERT INTO %s SELECT pg_backend_pid()", marker)),
		testkit.Submit(t, conn, fmt.Sprintf("SET lantern_async.task_timeout = '100ms'; SELECT pg_sleep(0.5); INSERT INTO %s SELECT pg_backend_pid()", marker)),
	}
	tx.End(t, "COMMIT")
	testkit.RequireSucceeded(t, conn, ids...)

	pids := testkit.MarkerValues(t, marker)
	require.Len(t, pids, len(ids))
	for _, p := range pids {
		require.Equal(t, pids[0], p, "all the tasks ran in the same worker process")
	}
	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}

// TestTaskTimeoutSetInTaskDoesNotApply: a SET lantern_async.task_timeout
// inside the task's string does not limit the task that runs it (its
// limit was fixed when it started), and does not carry over to the next
// task of the same worker (the session is reset in between).
func TestTaskTimeoutSetInTaskDoesNotApply(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_set")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '1s'", role))
	conn := testkit.Connect(t, role)

	tx := testkit.BeginHeld(t, conn)
	raised := testkit.Submit(t, conn, "SET lantern_async.task_timeout = '1min'; SELECT pg_sleep(30)")
	lowered := testkit.Submit(t, conn, "SET lantern_async.task_timeout = '1ms'; SELECT pg_sleep(0.3)")
	after := testkit.Submit(t, conn, "SELECT pg_sleep(0.3)")
	tx.End(t, "COMMIT")
	require.Equal(t, taskTimeoutMessage("00:00:01"), testkit.RequireFailed(t, conn, raised))
	testkit.RequireSucceeded(t, conn, lowered, after)
}

// TestTaskTimeoutIsNotACancel: cancel_task() of a task with a limit ends
// it canceled, and an administrator's pg_cancel_backend() ends it failed
// with the plain cancel message: neither reads as a timeout, and a
// timeout does not read as either.
func TestTaskTimeoutIsNotACancel(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "task_timeout_cancel")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '1min'", role))
	conn := testkit.Connect(t, role)

	rt := testkit.StartTask(t, su, conn, testkit.SleepQuery(60, "task_timeout_cancel"))
	testkit.RequireCancelTask(t, conn, rt.ID, true)
	testkit.RequireCanceled(t, conn, rt.ID, "57014")

	rt = testkit.StartTask(t, su, conn, testkit.SleepQuery(60, "task_timeout_admin"))
	testkit.MustExec(t, su, "SELECT pg_cancel_backend($1)", rt.Pid)
	msg := testkit.RequireFailedWithSQLState(t, conn, rt.ID, "57014")
	require.Equal(t, "ERROR:  canceling statement due to user request", msg)

	id := testkit.SubmitWithTimeout(t, conn, "SELECT pg_sleep(30)", testkit.Ptr("500ms"))
	msg = testkit.RequireFailed(t, conn, id)
	require.Equal(t, testkit.PerTaskTimeoutMessage("00:00:00.5"), msg)
	require.NotEqual(t, testkit.CanceledMessage, msg)
}

// TestTaskTimeoutOn020: a database still at 0.2.0 (lantern.task_owners has
// no timeout column) keeps working: the 1- and 2-argument submits run, and
// lantern_async.task_timeout applies. After ALTER EXTENSION UPDATE, the
// same session submits with a timeout of its own and the worker that was
// waiting idle there honours it.
func TestTaskTimeoutOn020(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, time.Minute)
	db := testkit.NewDatabase(t, su, "task_timeout_020")
	dbSU := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
	testkit.MustExec(t, dbSU, "CREATE EXTENSION lantern_async VERSION '0.2.0'")
	require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), dbSU))
	testkit.MustExec(t, su, fmt.Sprintf("ALTER DATABASE %s SET lantern_async.task_timeout = '1s'", db))
	conn := testkit.ConnectTo(t, testkit.Cluster, db, "alice")

	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT pg_sleep(0.2)"), testkit.SubmitNamed(t, conn, "SELECT 1", "named"))
	long := testkit.SubmitNamed(t, conn, "SELECT pg_sleep(30)", "long")
	require.Equal(t, taskTimeoutMessage("00:00:01"), testkit.RequireFailed(t, conn, long))
	require.Equal(t, "57014", testkit.QueryOne[string](t, dbSU, "SELECT sqlstate FROM lantern.task_errors WHERE jobid = $1", long))
	before, err := testkit.WorkerPidsIn(su, db, "alice")
	require.NoError(t, err)
	require.NotEmpty(t, before, "alice's worker waits idle in %s", db)

	testkit.MustExec(t, dbSU, "ALTER EXTENSION lantern_async UPDATE")
	// One task, whose commit wakes an idle worker that claimed under 0.2.0.
	own := testkit.SubmitWithTimeout(t, conn, "SELECT pg_sleep(30)", testkit.Ptr("500 ms"))
	require.Equal(t, testkit.PerTaskTimeoutMessage("00:00:00.5"), testkit.RequireFailed(t, conn, own))
	after, err := testkit.WorkerPidsIn(su, db, "alice")
	require.NoError(t, err)
	require.NotEmpty(t, after, "alice's worker still waits idle in %s (worker_idle_timeout 1 min)", db)
	for _, pid := range after {
		require.True(t, slices.Contains(before, pid), "worker %d of %v started after the update (before: %v)", pid, after, before)
	}
	testkit.RequireSucceeded(t, conn, testkit.SubmitWithTimeout(t, conn, "SELECT pg_sleep(1.5)", testkit.Ptr("1 min")))
}
