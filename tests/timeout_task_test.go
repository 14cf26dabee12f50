package tests

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Task timeouts (issue 9): lantern_async.task_timeout, set for a role, a
// database or the server, and a task's own timeout (the third argument of
// lantern.async_task()), stop a task that runs longer, across all of its
// transactions; it ends failed, 57014, with a message that says so. README,
// "Timeouts". (statement_timeout in tasks: timeout_test.go and
// timeout_psql_test.go.)

const msgTaskTimeout = "ERROR:  canceling task due to task timeout"

// taskTimeoutMessage is the whole error_message of a task stopped by
// lantern_async.task_timeout = limit (as an interval reads: "00:00:01")
// while in a statement that reports no context.
func taskTimeoutMessage(limit string) string {
	return msgTaskTimeout + "\n" +
		"DETAIL:  The task ran for longer than its time limit of " + limit + " (lantern_async.task_timeout).\n" +
		"HINT:  Raise lantern_async.task_timeout for the role or the database, " +
		"or give the task a timeout of its own in lantern.async_task()."
}

// perTaskTimeoutMessage is taskTimeoutMessage for a task's own timeout.
func perTaskTimeoutMessage(limit string) string {
	return msgTaskTimeout + "\n" +
		"DETAIL:  The task ran for longer than its time limit of " + limit +
		" (the timeout given to lantern.async_task()).\n" +
		"HINT:  Submit the task again with a longer timeout."
}

// submitWithTimeout queues query with lantern.async_task(query, NULL,
// timeout); timeout nil passes NULL.
func submitWithTimeout(t *testing.T, conn queryRower, query string, timeout *string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(ctx(t), "SELECT lantern.async_task($1, NULL, $2::interval)", query, timeout).Scan(&id),
		"async_task(%q, NULL, %v)", query, deref(timeout))
	return id
}

func ptr[T any](v T) *T { return &v }

// requireStoppedWithin asserts that the failed task's duration (submit to
// end) is under d: it was stopped, not left to run its long sleep.
func requireStoppedWithin(t *testing.T, jobid int64, d time.Duration) {
	t.Helper()
	r := getTask(t, nil, jobid)
	require.NotNil(t, r.Duration, "duration of task %d", jobid)
	require.Less(t, *r.Duration, d.Seconds(), "task %d must be stopped by its time limit", jobid)
}

// TestTaskTimeoutSetting: the GUC takes units like statement_timeout
// (milliseconds), defaults to 0 and can be set by any role in its session.
func TestTaskTimeoutSetting(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	var unit, gucContext, boot string
	require.NoError(t, su.QueryRow(ctx(t), `SELECT unit, context, boot_val FROM pg_settings
		WHERE name = 'lantern_async.task_timeout'`).Scan(&unit, &gucContext, &boot))
	require.Equal(t, []string{"ms", "user", "0"}, []string{unit, gucContext, boot})

	alice := connect(t, "alice")
	require.Equal(t, "0", queryOne[string](t, alice, "SHOW lantern_async.task_timeout"))
	for set, shown := range map[string]string{"'10min'": "10min", "'2h'": "2h", "1500": "1500ms", "'1s'": "1s", "0": "0"} {
		mustExec(t, alice, "SET lantern_async.task_timeout = "+set)
		require.Equal(t, shown, queryOne[string](t, alice, "SHOW lantern_async.task_timeout"), "SET lantern_async.task_timeout = %s", set)
	}
	_, err := alice.Exec(ctx(t), "SET lantern_async.task_timeout = '-1s'")
	requirePgError(t, err, "22023", "a negative lantern_async.task_timeout")
}

// TestTaskTimeoutPerRole: ALTER ROLE ... SET lantern_async.task_timeout
// stops that role's long task (failed, 57014, the whole message); its
// short task, and another role's task as long as the limit, succeed.
func TestTaskTimeoutPerRole(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_role")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '1s'", role))
	other := newTempRole(t, su, "task_timeout_other")
	conn := connect(t, role)
	otherConn := connect(t, other)

	long := submit(t, conn, "SELECT pg_sleep(30)")
	short := submit(t, conn, "SELECT pg_sleep(0.2)")
	unlimited := submit(t, otherConn, "SELECT pg_sleep(1.5)")
	msg := requireFailedWithSQLState(t, conn, long, "57014")
	require.Equal(t, taskTimeoutMessage("00:00:01"), msg)
	requireStoppedWithin(t, long, 20*time.Second)
	requireSucceeded(t, conn, short)
	requireSucceeded(t, otherConn, unlimited)
}

// TestTaskTimeoutPerDatabase: ALTER DATABASE ... SET
// lantern_async.task_timeout applies to the tasks of that database only.
func TestTaskTimeoutPerDatabase(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	db := newExtensionDatabase(t, su, "task_timeout_db")
	mustExec(t, su, fmt.Sprintf("ALTER DATABASE %s SET lantern_async.task_timeout = '1500ms'", db))
	conn := connectTo(t, cluster, db, "alice")
	id := submit(t, conn, "SELECT pg_sleep(30)")
	require.Equal(t, taskTimeoutMessage("00:00:01.5"), requireFailed(t, conn, id))

	// The same task elsewhere has no limit; alice has none of her own.
	alice := connect(t, "alice")
	requireSucceeded(t, alice, submit(t, alice, "SELECT pg_sleep(2)"))
}

// TestTaskTimeoutFromConfig: lantern_async.task_timeout in
// postgresql.conf (ALTER SYSTEM, reload) applies to every role, unless the
// role or the task says otherwise.
func TestTaskTimeoutFromConfig(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_conf")
	exempt := newTempRole(t, su, "task_timeout_exempt")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = 0", exempt))
	setSystemAtEnd(t, "lantern_async.task_timeout", "1s", "0")
	conn := connect(t, role)
	exemptConn := connect(t, exempt)

	over := submit(t, conn, "SELECT pg_sleep(30)")
	own := submitWithTimeout(t, conn, "SELECT pg_sleep(1.5)", ptr("1 min"))
	free := submit(t, exemptConn, "SELECT pg_sleep(1.5)")
	require.Equal(t, taskTimeoutMessage("00:00:01"), requireFailed(t, conn, over))
	requireSucceeded(t, conn, own)
	requireSucceeded(t, exemptConn, free)
}

// TestTaskTimeoutPerTask: the third argument of lantern.async_task() is
// the task's own limit, stored in lantern.task_owners.timeout: it
// overrides the role's setting both ways (shorter and longer), and NULL
// leaves the setting in force.
func TestTaskTimeoutPerTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_own")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '1s'", role))
	conn := connect(t, role)

	longer := submitWithTimeout(t, conn, "SELECT pg_sleep(2)", ptr("1 min"))
	shorter := submitWithTimeout(t, conn, "SELECT pg_sleep(30)", ptr("500 ms"))
	byName := queryOne[int64](t, conn, "SELECT lantern.async_task('SELECT pg_sleep(30)', 'named', timeout => '0.75 s')")
	setting := submitWithTimeout(t, conn, "SELECT pg_sleep(30)", nil)
	require.Equal(t, []string{"00:01:00", "00:00:00.5", "00:00:00.75", "<NULL>"},
		queryAll[string](t, conn, `SELECT coalesce(timeout::text, '<NULL>') FROM lantern.task_owners
			WHERE jobid = ANY ($1) ORDER BY jobid`, []int64{longer, shorter, byName, setting}),
		"lantern.task_owners.timeout, visible to the submitter")

	requireSucceeded(t, conn, longer)
	require.Equal(t, perTaskTimeoutMessage("00:00:00.5"), requireFailedWithSQLState(t, conn, shorter, "57014"))
	require.Equal(t, perTaskTimeoutMessage("00:00:00.75"), requireFailed(t, conn, byName))
	require.Equal(t, taskTimeoutMessage("00:00:01"), requireFailed(t, conn, setting))

	// A role without a setting: the task's own limit alone; days count 24 h.
	alice := connect(t, "alice")
	requireSucceeded(t, alice, submitWithTimeout(t, alice, "SELECT pg_sleep(0.2)", ptr("1 day 2 hours")))
	id := submitWithTimeout(t, alice, "SELECT pg_sleep(30)", ptr("1 s"))
	require.Equal(t, perTaskTimeoutMessage("00:00:01"), requireFailed(t, alice, id))
}

// TestTaskTimeoutRefusesNonPositive: a timeout of zero or less is an
// error (22023) and queues nothing; NULL is the setting's.
func TestTaskTimeoutRefusesNonPositive(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_bad")
	conn := connect(t, role)
	for _, bad := range []string{"0", "-1 s", "1 mon -30 days", "-1 day 23:59:59"} {
		_, err := conn.Exec(ctx(t), "SELECT lantern.async_task('SELECT 1', NULL, $1::interval)", bad)
		e := requirePgError(t, err, "22023", "timeout %q", bad)
		require.Equal(t, "timeout must be positive", e.Message)
		require.Equal(t, "Pass NULL to use lantern_async.task_timeout instead.", e.Hint)
	}
	require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = $1", role))
	// The smallest positive one is accepted; a huge one is no limit in practice.
	requireSucceeded(t, conn, submitWithTimeout(t, conn, "SELECT 1", ptr("178000000 years")))
	id := submitWithTimeout(t, conn, "SELECT pg_sleep(30)", ptr("1 microsecond"))
	require.Equal(t, perTaskTimeoutMessage("00:00:00.000001"), requireFailed(t, conn, id))
}

// TestTaskTimeoutSpansTransactions: the limit is for the whole string,
// not for each transaction or statement: every statement of these strings
// is well within the limit, and the string as a whole is not. What the
// string committed before the limit passed stays committed.
func TestTaskTimeoutSpansTransactions(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_xacts")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '2500ms'", role))
	marker := markerTable(t, su, "task_timeout_xacts", role)
	conn := connect(t, role)

	var parts []string
	for i := 1; i <= 6; i++ {
		parts = append(parts, fmt.Sprintf("INSERT INTO %s VALUES (%d); COMMIT; SELECT pg_sleep(1)", marker, i))
	}
	commits := submit(t, conn, strings.Join(parts, "; "))
	blocks := submit(t, conn, "BEGIN; SELECT pg_sleep(1); COMMIT; BEGIN; SELECT pg_sleep(1); COMMIT; "+
		"BEGIN; SELECT pg_sleep(1); COMMIT; BEGIN; SELECT pg_sleep(1); COMMIT")
	require.Equal(t, taskTimeoutMessage("00:00:02.5"), requireFailedWithSQLState(t, conn, commits, "57014"))
	requireStoppedWithin(t, commits, 5*time.Second)
	require.Equal(t, taskTimeoutMessage("00:00:02.5"), requireFailed(t, conn, blocks))

	got := markerValues(t, marker)
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
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_caught")
	marker := markerTable(t, su, "task_timeout_caught", role)
	conn := connect(t, role)

	again := submitWithTimeout(t, conn, fmt.Sprintf(`DO $$ BEGIN
		BEGIN PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN INSERT INTO %[1]s VALUES (1); END;
		INSERT INTO %[1]s VALUES (2); PERFORM pg_sleep(30); END $$`, marker), ptr("500 ms"))
	msg := requireFailedWithSQLState(t, conn, again, "57014")
	require.True(t, strings.HasPrefix(msg, perTaskTimeoutMessage("00:00:00.5")+"\nCONTEXT:  "), "error_message: %s", msg)
	requireStoppedWithin(t, again, 10*time.Second)

	ended := submitWithTimeout(t, conn, fmt.Sprintf(`DO $$ BEGIN
		PERFORM pg_sleep(30); EXCEPTION WHEN query_canceled THEN INSERT INTO %s VALUES (3); END $$`, marker), ptr("500 ms"))
	require.Equal(t, perTaskTimeoutMessage("00:00:00.5"), requireFailedWithSQLState(t, conn, ended, "57014"))
	require.Empty(t, markerValues(t, marker), "the work of a task stopped by its limit does not commit")
}

// TestTaskTimeoutCreateIndexConcurrently: a CREATE INDEX CONCURRENTLY on
// a slow expression (it commits several times on its own) is stopped by
// the task's limit, as pg_cancel_backend() would stop it: the index is
// left invalid, and the error keeps the context of where it was.
func TestTaskTimeoutCreateIndexConcurrently(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newCreatorRole(t, su, "task_timeout_cic")
	dropRolesAtEnd(t, role)
	conn := connect(t, role)
	tbl := ident(t, uniq("task_timeout_cic_t"))
	idx := tbl + "_slow_idx"
	mustExec(t, conn, fmt.Sprintf(`
		CREATE FUNCTION %[1]s_slow(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE
			AS $$ BEGIN PERFORM pg_sleep(0.05); RETURN i; END $$;
		CREATE TABLE %[1]s AS SELECT g AS a FROM generate_series(1, 400) g`, tbl))

	id := submitWithTimeout(t, conn, fmt.Sprintf("CREATE INDEX CONCURRENTLY %s ON %s (%s_slow(a))", idx, tbl, tbl), ptr("2 s"))
	msg := requireFailedWithSQLState(t, conn, id, "57014")
	require.True(t, strings.HasPrefix(msg, perTaskTimeoutMessage("00:00:02")+"\nCONTEXT:  "), "error_message: %s", msg)
	require.Contains(t, msg, "_slow(integer)")
	requireStoppedWithin(t, id, 10*time.Second)
	require.False(t, queryOne[bool](t, su, "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass", idx),
		"the index a stopped CREATE INDEX CONCURRENTLY leaves is invalid")

	// Within its limit the same build succeeds.
	small := ident(t, uniq("task_timeout_cic_small"))
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s AS SELECT g AS a FROM generate_series(1, 5) g", small))
	requireSucceeded(t, conn, submitWithTimeout(t, conn,
		fmt.Sprintf("CREATE INDEX CONCURRENTLY %s_idx ON %s (%s_slow(a))", small, small, tbl), ptr("1 min")))
	require.True(t, queryOne[bool](t, su, "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass", small+"_idx"))
}

// TestTaskTimeoutWithinLimit: tasks that end within their limit succeed
// and commit, and the timer ends with the task: the next task the same
// worker runs, with no limit, runs longer than the previous one's limit.
// All slots but one are busy and the tasks are committed together, so one
// worker runs them all (checked with pg_backend_pid).
func TestTaskTimeoutWithinLimit(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_within")
	conn := connect(t, role)
	marker := markerTable(t, su, "task_timeout_within", role)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers()-1)

	tx := beginHeld(t, conn)
	ids := []int64{
		submitWithTimeout(t, conn, fmt.Sprintf("INSERT INTO %s SELECT pg_backend_pid()", marker), ptr("1 s")),
		submitWithTimeout(t, conn, fmt.Sprintf("SELECT pg_sleep(0.3); INSERT INTO %s SELECT pg_backend_pid()", marker), ptr("1 s")),
		submit(t, conn, fmt.Sprintf("SELECT pg_sleep(1.5); INSERT INTO %s SELECT pg_backend_pid()", marker)),
		submit(t, conn, fmt.Sprintf("SET lantern_async.task_timeout = '100ms'; SELECT pg_sleep(0.5); INSERT INTO %s SELECT pg_backend_pid()", marker)),
	}
	tx.end(t, "COMMIT")
	requireSucceeded(t, conn, ids...)

	pids := markerValues(t, marker)
	require.Len(t, pids, len(ids))
	for _, p := range pids {
		require.Equal(t, pids[0], p, "all the tasks ran in the same worker process")
	}
	lock.release(t)
	requireSucceeded(t, su, blockers...)
}

// TestTaskTimeoutSetInTaskDoesNotApply: a SET lantern_async.task_timeout
// inside the task's string does not limit the task that runs it (its
// limit was fixed when it started), and does not carry over to the next
// task of the same worker (the session is reset in between).
func TestTaskTimeoutSetInTaskDoesNotApply(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_set")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '1s'", role))
	conn := connect(t, role)

	tx := beginHeld(t, conn)
	raised := submit(t, conn, "SET lantern_async.task_timeout = '1min'; SELECT pg_sleep(30)")
	lowered := submit(t, conn, "SET lantern_async.task_timeout = '1ms'; SELECT pg_sleep(0.3)")
	after := submit(t, conn, "SELECT pg_sleep(0.3)")
	tx.end(t, "COMMIT")
	require.Equal(t, taskTimeoutMessage("00:00:01"), requireFailed(t, conn, raised))
	requireSucceeded(t, conn, lowered, after)
}

// TestTaskTimeoutIsNotACancel: cancel_task() of a task with a limit ends
// it canceled, and an administrator's pg_cancel_backend() ends it failed
// with the plain cancel message: neither reads as a timeout, and a
// timeout does not read as either.
func TestTaskTimeoutIsNotACancel(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "task_timeout_cancel")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET lantern_async.task_timeout = '1min'", role))
	conn := connect(t, role)

	rt := startTask(t, su, conn, sleepQuery(60, "task_timeout_cancel"))
	requireCancelTask(t, conn, rt.id, true)
	requireCanceled(t, conn, rt.id, "57014")

	rt = startTask(t, su, conn, sleepQuery(60, "task_timeout_admin"))
	mustExec(t, su, "SELECT pg_cancel_backend($1)", rt.pid)
	msg := requireFailedWithSQLState(t, conn, rt.id, "57014")
	require.Equal(t, "ERROR:  canceling statement due to user request", msg)

	id := submitWithTimeout(t, conn, "SELECT pg_sleep(30)", ptr("500ms"))
	msg = requireFailed(t, conn, id)
	require.Equal(t, perTaskTimeoutMessage("00:00:00.5"), msg)
	require.NotEqual(t, canceledMessage, msg)
}

// TestTaskTimeoutOn020: a database still at 0.2.0 (lantern.task_owners has
// no timeout column) keeps working: the 1- and 2-argument submits run, and
// lantern_async.task_timeout applies. After ALTER EXTENSION UPDATE, the
// same session submits with a timeout of its own and the worker that was
// waiting idle there honours it.
func TestTaskTimeoutOn020(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	setWorkerIdleTimeout(t, su, time.Minute)
	db := newDatabase(t, su, "task_timeout_020")
	dbSU := connectTo(t, cluster, db, superuser)
	mustExec(t, dbSU, "CREATE EXTENSION lantern_async VERSION '0.2.0'")
	require.NoError(t, grantExtensionAccess(ctx(t), dbSU))
	mustExec(t, su, fmt.Sprintf("ALTER DATABASE %s SET lantern_async.task_timeout = '1s'", db))
	conn := connectTo(t, cluster, db, "alice")

	requireSucceeded(t, conn, submit(t, conn, "SELECT pg_sleep(0.2)"), submitNamed(t, conn, "SELECT 1", "named"))
	long := submitNamed(t, conn, "SELECT pg_sleep(30)", "long")
	require.Equal(t, taskTimeoutMessage("00:00:01"), requireFailed(t, conn, long))
	require.Equal(t, "57014", queryOne[string](t, dbSU, "SELECT sqlstate FROM lantern.task_errors WHERE jobid = $1", long))
	before, err := workerPidsIn(su, db, "alice")
	require.NoError(t, err)
	require.NotEmpty(t, before, "alice's worker waits idle in %s", db)

	mustExec(t, dbSU, "ALTER EXTENSION lantern_async UPDATE")
	// One task, whose commit wakes an idle worker that claimed under 0.2.0.
	own := submitWithTimeout(t, conn, "SELECT pg_sleep(30)", ptr("500 ms"))
	require.Equal(t, perTaskTimeoutMessage("00:00:00.5"), requireFailed(t, conn, own))
	after, err := workerPidsIn(su, db, "alice")
	require.NoError(t, err)
	require.NotEmpty(t, after, "alice's worker still waits idle in %s (worker_idle_timeout 1 min)", db)
	for _, pid := range after {
		require.True(t, slices.Contains(before, pid), "worker %d of %v started after the update (before: %v)", pid, after, before)
	}
	requireSucceeded(t, conn, submitWithTimeout(t, conn, "SELECT pg_sleep(1.5)", ptr("1 min")))
}
