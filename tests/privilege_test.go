package tests

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Privilege isolation: a task runs with exactly the rights of its role, the
// queue can only be changed through the extension, and nothing lets a role
// reach another identity. identity_test.go has the basic cases (RESET
// ROLE, SET SESSION AUTHORIZATION, pg_read_file, ownership, RLS on
// lantern.tasks, direct writes by one role); these extend them.

// newCreatorRole creates a fresh plain LOGIN role that may create tables in public.
func newCreatorRole(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	r := newLoginRole(t, su, base)
	mustExec(t, su, fmt.Sprintf("GRANT CREATE ON SCHEMA public TO %s", r))
	return r
}

// roleAttrs is what must not change about an attacking role.
type roleAttrs struct {
	Super, CreateRole, CreateDB, BypassRLS, Replication bool
	MemberOf                                            []string
}

func readRoleAttrs(t *testing.T, su *pgx.Conn, role string) roleAttrs {
	t.Helper()
	var a roleAttrs
	require.NoError(t, su.QueryRow(ctx(t), `
		SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication,
		       coalesce((SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_auth_members m
		                 JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '{}')
		FROM pg_roles r WHERE rolname = $1`, role).Scan(
		&a.Super, &a.CreateRole, &a.CreateDB, &a.BypassRLS, &a.Replication, &a.MemberOf))
	return a
}

// whoTable creates, as role, a table the role owns for the identity
// probes.
func whoTable(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	tbl := ident(t, uniq("who"))
	mustExec(t, conn, fmt.Sprintf(
		"CREATE TABLE %s(label text, su text, cu text, issu text, pid int DEFAULT pg_backend_pid())", tbl))
	return tbl
}

// probeQuery records session_user, current_user and is_superuser as seen
// inside a task.
func probeQuery(tbl, label string) string {
	return fmt.Sprintf("INSERT INTO %s(label, su, cu, issu) SELECT %s, session_user, current_user, current_setting('is_superuser')",
		tbl, lit(label))
}

// requireProbeRanAs waits for a probe task and asserts it ran as role.
func requireProbeRanAs(t *testing.T, conn, su *pgx.Conn, id int64, tbl, label, role string) {
	t.Helper()
	requireSucceeded(t, conn, id)
	var sessionUser, currentUser, isSuper string
	require.NoError(t, su.QueryRow(ctx(t), fmt.Sprintf("SELECT su, cu, issu FROM %s WHERE label = $1", tbl), label).Scan(
		&sessionUser, &currentUser, &isSuper))
	require.Equal(t, []string{role, role, "off"}, []string{sessionUser, currentUser, isSuper},
		"session_user, current_user, is_superuser inside a task of %s (%s)", role, label)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// TestTaskPrivilegeEscalationRefused submits, as a plain LOGIN role, tasks
// that try to reach another identity or a superuser-only action. Each must
// fail with the error PostgreSQL gives that role in a normal session and
// change nothing; the role's next task (same worker, if it is still there)
// still runs as the role.
func TestTaskPrivilegeEscalationRefused(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newCreatorRole(t, su, "attacker")
	other := ident(t, uniq("notgranted"))
	mustExec(t, su, fmt.Sprintf("CREATE ROLE %s NOLOGIN", other))
	conn := connect(t, role)
	who := whoTable(t, conn)
	evil := ident(t, uniq("evil"))
	pwned := fmt.Sprintf("/tmp/lantern_async_pwned_%d_%d", os.Getpid(), nameCounter.Add(1))
	require.False(t, fileExists(pwned))
	t.Cleanup(func() { _ = os.Remove(pwned) })

	attrsBefore := readRoleAttrs(t, su, role)
	require.Equal(t, roleAttrs{MemberOf: []string{}}, attrsBefore, "a plain role")
	extBefore := queryOne[int](t, su, "SELECT count(*)::int FROM pg_extension WHERE extname = 'dblink'")
	autoConfBefore := queryOne[int](t, su, "SELECT count(*)::int FROM pg_file_settings WHERE name = 'work_mem'")

	attacks := []struct {
		name, sql, code, msg string
	}{
		{"SET ROLE not granted", "SET ROLE " + other, "42501", `permission denied to set role "` + other + `"`},
		{"SET ROLE postgres", "SET ROLE postgres", "42501", `permission denied to set role "postgres"`},
		{"SET SESSION AUTHORIZATION", "SET SESSION AUTHORIZATION postgres", "42501", "permission denied to set session authorization"},
		{"RESET SESSION AUTHORIZATION then SET ROLE", "RESET SESSION AUTHORIZATION; SET ROLE postgres", "42501", `permission denied to set role "postgres"`},
		{"set_config role", "SELECT set_config('role', 'postgres', false)", "42501", `permission denied to set role "postgres"`},
		{"set_config session_authorization", "SELECT set_config('session_authorization', 'postgres', false)", "42501", "permission denied to set session authorization"},
		{"ALTER ROLE self SUPERUSER", fmt.Sprintf("ALTER ROLE %s SUPERUSER", role), "42501", "must be superuser"},
		{"ALTER ROLE self BYPASSRLS", fmt.Sprintf("ALTER ROLE %s BYPASSRLS", role), "42501", "must be superuser to change bypassrls attribute"},
		{"ALTER ROLE self CREATEROLE", fmt.Sprintf("ALTER ROLE %s CREATEROLE", role), "42501", "permission denied"},
		{"GRANT postgres TO self", fmt.Sprintf("GRANT postgres TO %s", role), "42501", "must be superuser"},
		{"GRANT pg_execute_server_program TO self", fmt.Sprintf("GRANT pg_execute_server_program TO %s", role), "42501", "must have admin option on role"},
		{"CREATE ROLE SUPERUSER", fmt.Sprintf("CREATE ROLE %s SUPERUSER", evil), "42501", "must be superuser to create superusers"},
		{"CREATE ROLE", fmt.Sprintf("CREATE ROLE %s LOGIN", evil), "42501", "permission denied to create role"},
		{"COPY TO PROGRAM", fmt.Sprintf("COPY (SELECT 1) TO PROGRAM 'touch %s'", pwned), "42501", "pg_execute_server_program"},
		{"ALTER SYSTEM", "ALTER SYSTEM SET work_mem = '1GB'", "42501", `permission denied to set parameter "work_mem"`},
		{"CREATE EXTENSION dblink", "CREATE EXTENSION dblink", "42501", `permission denied to create extension "dblink"`},
		{"C function", "CREATE FUNCTION " + evil + "_fn() RETURNS bigint AS 'lantern_async', 'lantern_async_task' LANGUAGE c", "42501", "permission denied for language c"},
		{"LOAD", "LOAD 'lantern_async'", "42501", `access to library "lantern_async" is not allowed`},
		{"superuser-only setting", "SET session_replication_role = replica", "42501", `permission denied to set parameter "session_replication_role"`},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			label := ident(t, uniq("probe"))
			id := submit(t, conn, a.sql)
			// Queued right behind it: likely run by the same worker process.
			probe := submit(t, conn, probeQuery(who, label))

			msg := requireFailedWithSQLState(t, conn, id, a.code)
			require.True(t, strings.HasPrefix(msg, "ERROR:  "), "error_message %q", msg)
			require.Contains(t, msg, a.msg)
			requireProbeRanAs(t, conn, su, probe, who, label, role)

			require.Equal(t, attrsBefore, readRoleAttrs(t, su, role), "the attacking role's attributes and memberships")
			require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM pg_roles WHERE rolname = $1", evil), "role %s", evil)
			require.False(t, fileExists(pwned), "%s must not exist", pwned)
			require.Equal(t, extBefore, queryOne[int](t, su, "SELECT count(*)::int FROM pg_extension WHERE extname = 'dblink'"))
			require.Equal(t, autoConfBefore, queryOne[int](t, su, "SELECT count(*)::int FROM pg_file_settings WHERE name = 'work_mem'"),
				"postgresql.auto.conf unchanged")
			require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM pg_proc WHERE proname = $1", evil+"_fn"))
		})
	}

	// The same statements from a client session of the role fail the same
	// way: a task has no more rights than the role's own session.
	for _, a := range attacks {
		_, err := conn.Exec(ctx(t), a.sql)
		requirePgError(t, err, a.code, "%s in a client session of %s", a.sql, role)
	}
	require.Equal(t, attrsBefore, readRoleAttrs(t, su, role))
}

// TestTaskSetRoleToGrantedRole: SET ROLE to a role the submitter IS a member
// of works inside a task, with that role's privileges (normal SQL rules),
// and does not leak into the role's next task.
func TestTaskSetRoleToGrantedRole(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newCreatorRole(t, su, "member")
	group := ident(t, uniq("grp"))
	tbl := ident(t, uniq("grp_only"))
	mustExec(t, su, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN; GRANT %[1]s TO %[2]s; GRANT CREATE ON SCHEMA public TO %[1]s;
		CREATE TABLE %[3]s(cu text, su text); ALTER TABLE %[3]s OWNER TO %[1]s`, group, role, tbl))
	conn := connect(t, role)
	who := whoTable(t, conn)

	// The role does not inherit the group's rights: without SET ROLE it has
	// none on the group's table, so the difference SET ROLE makes shows.
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s NOINHERIT", role))
	denied := submit(t, conn, fmt.Sprintf("INSERT INTO %s SELECT current_user, session_user", tbl))
	msg := requireFailedWithSQLState(t, conn, denied, "42501")
	require.Contains(t, msg, "permission denied for table "+tbl)

	id := submit(t, conn, fmt.Sprintf("SET ROLE %s; INSERT INTO %s SELECT current_user, session_user", group, tbl))
	label := ident(t, uniq("after_setrole"))
	probe := submit(t, conn, probeQuery(who, label))
	requireSucceeded(t, conn, id)
	var cu, sessionUser string
	require.NoError(t, su.QueryRow(ctx(t), fmt.Sprintf("SELECT cu, su FROM %s", tbl)).Scan(&cu, &sessionUser))
	require.Equal(t, group, cu, "current_user after SET ROLE inside the task")
	require.Equal(t, role, sessionUser, "session_user inside the task")
	requireProbeRanAs(t, conn, su, probe, who, label, role)

	// An object created after SET ROLE belongs to the group.
	created := ident(t, uniq("grp_created"))
	requireSucceeded(t, conn, submit(t, conn, fmt.Sprintf("SET ROLE %s; CREATE TABLE %s(a int)", group, created)))
	require.Equal(t, group, tableOwner(t, su, created))
	require.Equal(t, role, getTask(t, su, id).Username, "the task is still recorded as the submitter's")
}

// TestQueueProtections extends TestTasksNotWritableByUsers: no column of
// one's own or another role's row can be updated, no row deleted, neither
// table truncated or locked against the workers, the jobid sequence is out
// of reach, and row-level security also hides other roles' lantern.task_errors
// rows, also through a view the role owns.
func TestQueueProtections(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	roleA, roleB := newCreatorRole(t, su, "qa"), newCreatorRole(t, su, "qb")
	a, b := connect(t, roleA), connect(t, roleB)

	aOK := submitNamed(t, a, "SELECT 1", "a ok")
	aFail := submit(t, a, "SELECT 1/0")
	bOK := submitNamed(t, b, "SELECT 2", "b ok")
	bFail := submit(t, b, "SELECT 2/0")
	requireSucceeded(t, a, aOK)
	requireFailed(t, a, aFail)
	requireSucceeded(t, b, bOK)
	requireFailed(t, b, bFail)
	snapshot := func() string {
		return queryOne[string](t, su, `
			SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s', t.jobid, t.query, t.job_name, t.username, t.status,
			                         t.duration, t.error_message, e.sqlstate), E'\n' ORDER BY t.jobid)
			FROM lantern.tasks t LEFT JOIN lantern.task_errors e USING (jobid) WHERE t.jobid = ANY($1)`,
			[]int64{aOK, aFail, bOK, bFail})
	}
	before := snapshot()
	seqBefore := queryOne[int64](t, su, "SELECT last_value FROM lantern.tasks_jobid_seq")

	var stmts []string
	for _, id := range []int64{aOK, bOK} {
		for _, set := range []string{
			"status = 'pending'", "status = 'succeeded'", "query = 'SELECT 666'", "username = 'postgres'",
			"error_message = NULL", "duration = NULL", "job_name = 'x'", "started_at = now()",
		} {
			stmts = append(stmts, fmt.Sprintf("UPDATE lantern.tasks SET %s WHERE jobid = %d", set, id))
		}
		stmts = append(stmts, fmt.Sprintf("DELETE FROM lantern.tasks WHERE jobid = %d", id))
	}
	stmts = append(stmts,
		"INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'postgres')",
		fmt.Sprintf("INSERT INTO lantern.tasks (query, username, status) VALUES ('SELECT 1', %s, 'pending')", lit(roleB)),
		"DELETE FROM lantern.tasks",
		"UPDATE lantern.tasks SET status = 'failed'",
		"TRUNCATE lantern.tasks",
		"TRUNCATE lantern.task_errors",
		"TRUNCATE lantern.tasks CASCADE",
		fmt.Sprintf("UPDATE lantern.task_errors SET sqlstate = '00000' WHERE jobid = %d", aFail),
		fmt.Sprintf("DELETE FROM lantern.task_errors WHERE jobid = %d", bFail),
		"SELECT nextval('lantern.tasks_jobid_seq')",
		"SELECT setval('lantern.tasks_jobid_seq', 1)",
		"SELECT last_value FROM lantern.tasks_jobid_seq",
		"ALTER SEQUENCE lantern.tasks_jobid_seq RESTART",
		"SELECT jobid FROM lantern.tasks FOR UPDATE",
		"SELECT jobid FROM lantern.tasks FOR KEY SHARE",
		"ALTER TABLE lantern.tasks DISABLE ROW LEVEL SECURITY",
		"CREATE POLICY see_all ON lantern.tasks FOR SELECT USING (true)",
		"DROP POLICY tasks_own_rows ON lantern.tasks",
		"CREATE TRIGGER t BEFORE UPDATE ON lantern.tasks FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
		"DROP TABLE lantern.tasks",
		"CREATE TABLE lantern.shadow(a int)",
		"CREATE FUNCTION lantern.shadow() RETURNS int LANGUAGE sql AS 'SELECT 1'",
	)
	for _, q := range stmts {
		_, err := a.Exec(ctx(t), q)
		requirePgError(t, err, "42501", "%s as %s", q, roleA)
	}
	// LOCK needs a transaction block; a lock on the queue would stall every
	// worker's claim.
	for _, mode := range []string{"ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE", "ROW EXCLUSIVE"} {
		tx, err := a.Begin(ctx(t))
		require.NoError(t, err)
		_, err = tx.Exec(ctx(t), "LOCK TABLE lantern.tasks IN "+mode+" MODE")
		requirePgError(t, err, "42501", "LOCK TABLE lantern.tasks IN %s MODE as %s", mode, roleA)
		require.NoError(t, tx.Rollback(ctx(t)))
	}
	require.Equal(t, before, snapshot(), "the rows are unchanged")
	require.Equal(t, seqBefore, queryOne[int64](t, su, "SELECT last_value FROM lantern.tasks_jobid_seq"), "the jobid sequence is unchanged")

	// Reading: own rows only, in both tables, also through a view the role
	// owns (the view runs with its owner's rights, and RLS applies to it).
	require.Equal(t, 1, queryOne[int](t, a, "SELECT count(*)::int FROM lantern.task_errors WHERE jobid = $1", aFail))
	require.Equal(t, 0, queryOne[int](t, a, "SELECT count(*)::int FROM lantern.task_errors WHERE jobid = $1", bFail))
	require.Equal(t, 0, queryOne[int](t, b, "SELECT count(*)::int FROM lantern.task_errors WHERE jobid = $1", aFail))
	require.Equal(t, 1, queryOne[int](t, b, "SELECT count(*)::int FROM lantern.task_errors WHERE jobid = $1", bFail))
	require.Equal(t, 0, queryOne[int](t, a, `SELECT count(*)::int FROM lantern.task_errors e
		WHERE NOT EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid = e.jobid AND t.username = current_user)`),
		"every lantern.task_errors row visible to a role is one of its own tasks")
	require.Greater(t, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.task_errors"), 1, "the superuser sees every row")
	view := ident(t, uniq("tasks_view"))
	mustExec(t, a, fmt.Sprintf("CREATE VIEW %s AS SELECT t.jobid, t.username, e.sqlstate FROM lantern.tasks t LEFT JOIN lantern.task_errors e USING (jobid)", view))
	mustExec(t, a, fmt.Sprintf("GRANT SELECT ON %s TO %s", view, roleB))
	require.Equal(t, 0, queryOne[int](t, a, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE username <> current_user", view)))
	require.Equal(t, 2, queryOne[int](t, a, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE jobid = ANY($1)", view),
		[]int64{aOK, aFail, bOK, bFail}))
	// A view does not switch CURRENT_USER at execution, so the policy still
	// compares with the reader: b sees its own rows through a's view and
	// none of a's.
	require.Equal(t, 0, queryOne[int](t, b, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE jobid = ANY($1)", view),
		[]int64{aOK, aFail}), "b reading through a's view must not see a's rows")
	require.Equal(t, 0, queryOne[int](t, b, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE username <> current_user", view)))
}

// TestTaskCannotTouchQueue: a task runs in the worker process that also
// does the bookkeeping, but its SQL has only its role's rights on the queue:
// it cannot write or forge rows (a forged 'pending' row of postgres would
// run as a superuser), read other roles' rows, or draw jobids. A task may
// submit another task, which is recorded as the same role.
func TestTaskCannotTouchQueue(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newCreatorRole(t, su, "intask")
	conn := connect(t, role)
	out := ident(t, uniq("intask_out"))
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s(label text, n bigint, cu text)", out))
	first := submit(t, conn, "SELECT 1")
	requireSucceeded(t, conn, first)
	other := submit(t, connect(t, "bob"), "SELECT 'bob'")
	requireSucceeded(t, su, other)
	forged := "SELECT 'forged by " + role + "'"

	for _, q := range []string{
		fmt.Sprintf("UPDATE lantern.tasks SET status = 'pending' WHERE jobid = %d", first),
		fmt.Sprintf("UPDATE lantern.tasks SET query = 'SELECT 666' WHERE jobid = %d", other),
		"UPDATE lantern.tasks SET status = 'failed' WHERE status = 'running'",
		fmt.Sprintf("DELETE FROM lantern.tasks WHERE jobid = %d", first),
		fmt.Sprintf("INSERT INTO lantern.tasks(query, username, status) VALUES (%s, 'postgres', 'pending')", lit(forged)),
		fmt.Sprintf("INSERT INTO lantern.tasks(query) VALUES (%s)", lit(forged)),
		"TRUNCATE lantern.tasks",
		"SELECT nextval('lantern.tasks_jobid_seq')",
		"SELECT jobid FROM lantern.tasks FOR UPDATE",
		"BEGIN; LOCK TABLE lantern.tasks IN ACCESS EXCLUSIVE MODE; COMMIT",
		"ALTER TABLE lantern.tasks DISABLE ROW LEVEL SECURITY",
	} {
		id := submit(t, conn, q)
		msg := requireFailed(t, conn, id)
		require.Contains(t, msg, "ERROR:  ", q)
		require.Equal(t, "42501", taskSQLState(t, id), "task %q: %s", q, msg)
	}
	require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE query = $1", forged), "no forged row")
	require.Equal(t, "SELECT 'bob'", getTask(t, su, other).Query)
	require.Equal(t, "succeeded", deref(getTask(t, su, first).Status))

	// Reads see the role's own rows only.
	requireSucceeded(t, conn, submit(t, conn, fmt.Sprintf(
		"INSERT INTO %s SELECT 'others', count(*), current_user FROM lantern.tasks WHERE username <> current_user", out)))
	requireSucceeded(t, conn, submit(t, conn, fmt.Sprintf(
		"INSERT INTO %s SELECT 'other errors', count(*), current_user FROM lantern.task_errors e WHERE jobid NOT IN (SELECT jobid FROM lantern.tasks WHERE username = current_user)", out)))
	require.Equal(t, int64(0), queryOne[int64](t, su, fmt.Sprintf("SELECT n FROM %s WHERE label = 'others'", out)))
	require.Equal(t, int64(0), queryOne[int64](t, su, fmt.Sprintf("SELECT n FROM %s WHERE label = 'other errors'", out)))

	// A task submitting a task: recorded as the same role, runs as it.
	nestedOut := ident(t, uniq("nested"))
	parent := submit(t, conn, fmt.Sprintf("SELECT lantern.async_task(%s, 'nested')",
		lit(fmt.Sprintf("CREATE TABLE %s AS SELECT session_user::text AS su, current_user::text AS cu", nestedOut))))
	requireSucceeded(t, conn, parent)
	var nested int64
	requirePoll(t, waitTimeout, "the nested task to be visible", whileConnected(su, func() (bool, string) {
		err := su.QueryRow(ctx(t), "SELECT jobid FROM lantern.tasks WHERE job_name = 'nested' AND jobid > $1 AND username = $2",
			parent, role).Scan(&nested)
		return err == nil, fmt.Sprint(err)
	}))
	requireSucceeded(t, conn, nested)
	var sessionUser, currentUser string
	require.NoError(t, su.QueryRow(ctx(t), "SELECT su, cu FROM "+nestedOut).Scan(&sessionUser, &currentUser))
	require.Equal(t, []string{role, role}, []string{sessionUser, currentUser})
	require.Equal(t, role, tableOwner(t, su, nestedOut))
}

// TestCannotSignalOthersProcesses: a role can terminate its own tasks'
// processes (TestTaskProcessTerminatedBySameRole) but not the dispatcher
// (a superuser process) nor another role's worker, neither from a client
// session nor from a task.
func TestCannotSignalOthersProcesses(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	attacker, victimRole := newCreatorRole(t, su, "sigatk"), newCreatorRole(t, su, "sigvic")
	conn, victimConn := connect(t, attacker), connect(t, victimRole)

	lock := holdAdvisoryLock(t)
	victim := submit(t, victimConn, lock.waitSQL())
	lock.waitBlocked(t, su, []int64{victim})
	victimPid := workerPid(t, su, getTask(t, su, victim).Query)
	dispatcher := dispatcherPid(t, su)

	for _, target := range []struct {
		name string
		pid  int
		msg  string
	}{
		{"dispatcher", dispatcher, "must be a superuser to"},
		{"another role's worker", victimPid, "must be a member of the role whose"},
	} {
		for _, fn := range []string{"pg_terminate_backend", "pg_cancel_backend"} {
			q := fmt.Sprintf("SELECT %s(%d)", fn, target.pid)
			_, err := conn.Exec(ctx(t), q)
			pgErr := requirePgError(t, err, "42501", "%s on the %s from a client session", fn, target.name)
			require.Contains(t, pgErr.Message, target.msg)

			msg := requireFailedWithSQLState(t, conn, submit(t, conn, q), "42501")
			require.Contains(t, msg, target.msg, "%s on the %s from a task", fn, target.name)
		}
	}
	require.Equal(t, dispatcher, dispatcherPid(t, su))
	require.Equal(t, "running", deref(getTask(t, su, victim).Status))
	require.Equal(t, victimPid, workerPid(t, su, getTask(t, su, victim).Query))
	lock.release(t)
	requireSucceeded(t, victimConn, victim)
}

// TestSecurityDefinerHygiene: any SECURITY DEFINER function in schema
// lantern must pin search_path (to schemas a caller cannot write to).
// Today there is none: async_task and the cancel functions are SECURITY
// INVOKER C functions that switch to the table owner inside C, with
// search_path pinned there (cgo/loader/elevate.c); the test then also
// checks that every function of the schema is such a C function, so that a
// SQL or PL/pgSQL function added later without SECURITY DEFINER cannot be
// relying on rights its callers lack.
func TestSecurityDefinerHygiene(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	rows, err := su.Query(ctx(t), `
		SELECT p.oid::regprocedure::text, p.prosecdef, l.lanname::text, coalesce(p.proconfig, '{}')
		FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
		WHERE p.pronamespace = 'lantern'::regnamespace ORDER BY 1`)
	require.NoError(t, err)
	type fn struct {
		sig    string
		secdef bool
		lang   string
		config []string
	}
	fns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (fn, error) {
		var f fn
		err := r.Scan(&f.sig, &f.secdef, &f.lang, &f.config)
		return f, err
	})
	require.NoError(t, err)
	require.NotEmpty(t, fns)
	var secdefs []string
	for _, f := range fns {
		t.Logf("%s: security definer=%v language=%s config=%v", f.sig, f.secdef, f.lang, f.config)
		if !f.secdef {
			require.Equal(t, "c", f.lang, "%s: a non-C function in schema lantern", f.sig)
			continue
		}
		secdefs = append(secdefs, f.sig)
		var path string
		for _, c := range f.config {
			if v, ok := strings.CutPrefix(c, "search_path="); ok {
				path = v
			}
		}
		require.NotEmpty(t, path, "SECURITY DEFINER %s must set search_path (proconfig %v)", f.sig, f.config)
		for _, s := range strings.Split(path, ",") {
			s = strings.Trim(strings.TrimSpace(s), `"`)
			require.NotContains(t, []string{"public", "$user"}, s, "%s: search_path %q includes a schema callers may write to", f.sig, path)
		}
	}
	if len(secdefs) == 0 {
		t.Logf("no SECURITY DEFINER function in schema lantern (elevation is done in C, with search_path pinned)")
	}
	// Nor can anyone but the schema's owner add functions to schema lantern.
	require.Equal(t, 0, queryOne[int](t, su, `
		SELECT count(*)::int FROM pg_namespace n, aclexplode(n.nspacl) a
		WHERE n.nspname = 'lantern' AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner`),
		"CREATE on schema lantern granted to a role other than its owner")
	require.False(t, queryOne[bool](t, su, "SELECT has_schema_privilege('alice', 'lantern', 'CREATE')"))
}

// TestNoLoginRefusedWithHint extends TestNoLoginRoleRefused: the refusal
// carries a HINT, holds for a NOLOGIN role reached through a SECURITY
// DEFINER function (CURRENT_USER is its owner) and inside a transaction,
// and nothing is queued.
func TestNoLoginRefusedWithHint(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	plain := newCreatorRole(t, su, "viaplain")
	nologin := ident(t, uniq("nl"))
	fn := ident(t, uniq("nl_submit"))
	mustExec(t, su, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN; GRANT %[1]s TO %[2]s;
		CREATE FUNCTION public.%[3]s() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
			AS $$ SELECT lantern.async_task('SELECT 1') $$;
		ALTER FUNCTION public.%[3]s() OWNER TO %[1]s;
		GRANT EXECUTE ON FUNCTION public.%[3]s() TO %[2]s`, nologin, plain, fn))
	conn := connect(t, plain)
	total := countTasks(t, su)

	check := func(t *testing.T, err error) {
		t.Helper()
		pgErr := requirePgError(t, err, "42501", "submitting as NOLOGIN role %s", nologin)
		t.Logf("refused: %s", errorText(err))
		require.Contains(t, pgErr.Message, nologin, "the message names the role")
		require.NotEmpty(t, pgErr.Hint, "the refusal has a HINT")
		require.Contains(t, pgErr.Hint, "LOGIN")
	}
	t.Run("SET ROLE", func(t *testing.T) {
		mustExec(t, conn, "SET ROLE "+nologin)
		var id int64
		check(t, conn.QueryRow(ctx(t), "SELECT lantern.async_task('SELECT 1')").Scan(&id))
		mustExec(t, conn, "RESET ROLE")
	})
	t.Run("SECURITY DEFINER function", func(t *testing.T) {
		var id int64
		check(t, conn.QueryRow(ctx(t), fmt.Sprintf("SELECT public.%s()", fn)).Scan(&id))
	})
	t.Run("in a transaction after a valid submit", func(t *testing.T) {
		tx, err := conn.Begin(ctx(t))
		require.NoError(t, err)
		var ok, id int64
		require.NoError(t, tx.QueryRow(ctx(t), "SELECT lantern.async_task('SELECT 1')").Scan(&ok))
		_, err = tx.Exec(ctx(t), "SET LOCAL ROLE "+nologin)
		require.NoError(t, err)
		check(t, tx.QueryRow(ctx(t), "SELECT lantern.async_task('SELECT 2')").Scan(&id))
		require.NoError(t, tx.Rollback(ctx(t)))
		require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", ok),
			"the transaction's earlier submit was rolled back with it")
	})
	require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username IN ($1, $2)", nologin, plain))
	require.Equal(t, total, countTasks(t, su), "nothing was queued")

	// The same role with LOGIN may submit (the refusal is about LOGIN, not
	// about the role).
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s LOGIN", nologin))
	var id int64
	require.NoError(t, conn.QueryRow(ctx(t), fmt.Sprintf("SELECT public.%s()", fn)).Scan(&id))
	requireSucceeded(t, su, id)
	require.Equal(t, nologin, getTask(t, su, id).Username)
}

// TestRoleChangedBeforeTaskRuns: a role that loses LOGIN, is dropped or is
// renamed between submitting and the task's start gets the task 'failed'
// with a message saying so; the task never runs under another identity.
// The submit is committed only after the change, so the dispatcher cannot
// have started it before.
func TestRoleChangedBeforeTaskRuns(t *testing.T) {
	cases := []struct {
		name, change, code, msg string
	}{
		{"NOLOGIN", "ALTER ROLE %s NOLOGIN", "28000", `role "%s" is not permitted to log in`},
		{"dropped", "DROP ROLE %s", "42704", `role "%s" does not exist`},
		{"renamed", "ALTER ROLE %s RENAME TO %[1]s_renamed", "42704", `role "%s" does not exist`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			begin(t)
			su := connect(t, superuser)
			// No grants: a role with privileges cannot be dropped.
			role := newLoginRole(t, su, "changed")
			conn := connect(t, role)
			tx, err := conn.Begin(ctx(t))
			require.NoError(t, err)
			id := submit(t, tx, "SELECT current_user")
			mustExec(t, su, fmt.Sprintf(tc.change, role))
			require.NoError(t, tx.Commit(ctx(t)))

			msg := requireFailedWithSQLState(t, su, id, tc.code)
			require.True(t, strings.HasPrefix(msg, "ERROR:  "+fmt.Sprintf(tc.msg, role)), "error_message %q", msg)
			require.Equal(t, role, getTask(t, su, id).Username)
			requireNoOrphans(t, su)
		})
	}
}
