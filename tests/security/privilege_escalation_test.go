package security

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Privilege isolation: a task runs with exactly the rights of its role, the
// queue can only be changed through the extension, and nothing lets a role
// reach another identity. identity_test.go has the basic cases (RESET
// ROLE, SET SESSION AUTHORIZATION, pg_read_file, ownership, RLS on
// lantern.tasks, direct writes by one role); these extend them.
//
// This file: a task cannot reach another identity (SET ROLE, SET SESSION
// AUTHORIZATION, ALTER ROLE, ...) or signal other roles' processes;
// privilege_queue_test.go: the queue tables; privilege_login_test.go: LOGIN
// and role changes.

// roleAttrs is what must not change about an attacking role.
type roleAttrs struct {
	Super, CreateRole, CreateDB, BypassRLS, Replication bool
	MemberOf                                            []string
}

func readRoleAttrs(t *testing.T, su *pgx.Conn, role string) roleAttrs {
	t.Helper()
	var a roleAttrs
	require.NoError(t, su.QueryRow(testkit.Ctx(t), `
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
	tbl := testkit.Ident(t, testkit.Uniq("who"))
	testkit.MustExec(t, conn, fmt.Sprintf(
		"CREATE TABLE %s(label text, su text, cu text, issu text, pid int DEFAULT pg_backend_pid())", tbl))
	return tbl
}

// probeQuery records session_user, current_user and is_superuser as seen
// inside a task.
func probeQuery(tbl, label string) string {
	return fmt.Sprintf("INSERT INTO %s(label, su, cu, issu) SELECT %s, session_user, current_user, current_setting('is_superuser')",
		tbl, testkit.Lit(label))
}

// requireProbeRanAs waits for a probe task and asserts it ran as role.
func requireProbeRanAs(t *testing.T, conn, su *pgx.Conn, id int64, tbl, label, role string) {
	t.Helper()
	testkit.RequireSucceeded(t, conn, id)
	var sessionUser, currentUser, isSuper string
	require.NoError(t, su.QueryRow(testkit.Ctx(t), fmt.Sprintf("SELECT su, cu, issu FROM %s WHERE label = $1", tbl), label).Scan(
		&sessionUser, &currentUser, &isSuper))
	require.Equal(t, []string{role, role, "off"}, []string{sessionUser, currentUser, isSuper},
		"session_user, current_user, is_superuser inside a task of %s (%s)", role, label)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// escalationAttack is a statement by which a plain LOGIN role tries to
// reach another identity or a superuser-only action, with the SQLSTATE and
// (part of) the error, as psql shows it, that PostgreSQL refuses it with:
// msg on 15, msg16 from 16 on where 16 reworded it (the role and privilege
// checks, with the reason in a DETAIL).
type escalationAttack struct {
	name, sql, code, msg, msg16 string
}

// want is the part of the refusal expected on the server under test.
func (a escalationAttack) want(t *testing.T) string {
	t.Helper()
	if a.msg16 != "" && testkit.ServerVersionNum(t) >= 160000 {
		return a.msg16
	}
	return a.msg
}

// escalationAttacks lists the attacks of role: other is a NOLOGIN role not
// granted to it, evil a name it must not be able to give a role or a
// function, pwned a file it must not be able to create.
func escalationAttacks(role, other, evil, pwned string) []escalationAttack {
	return []escalationAttack{
		{"SET ROLE not granted", "SET ROLE " + other, "42501", `permission denied to set role "` + other + `"`, ""},
		{"SET ROLE postgres", "SET ROLE postgres", "42501", `permission denied to set role "postgres"`, ""},
		{"SET SESSION AUTHORIZATION", "SET SESSION AUTHORIZATION postgres", "42501", "permission denied to set session authorization", ""},
		{"RESET SESSION AUTHORIZATION then SET ROLE", "RESET SESSION AUTHORIZATION; SET ROLE postgres", "42501", `permission denied to set role "postgres"`, ""},
		{"set_config role", "SELECT set_config('role', 'postgres', false)", "42501", `permission denied to set role "postgres"`, ""},
		{"set_config session_authorization", "SELECT set_config('session_authorization', 'postgres', false)", "42501", "permission denied to set session authorization", ""},
		{"ALTER ROLE self SUPERUSER", fmt.Sprintf("ALTER ROLE %s SUPERUSER", role), "42501", "must be superuser",
			"ERROR:  permission denied to alter role\nDETAIL:  Only roles with the SUPERUSER attribute may change the SUPERUSER attribute."},
		{"ALTER ROLE self BYPASSRLS", fmt.Sprintf("ALTER ROLE %s BYPASSRLS", role), "42501", "must be superuser to change bypassrls attribute",
			"ERROR:  permission denied to alter role\nDETAIL:  Only roles with the CREATEROLE attribute and the ADMIN option on role \"" + role + "\" may alter this role."},
		{"ALTER ROLE self CREATEROLE", fmt.Sprintf("ALTER ROLE %s CREATEROLE", role), "42501", "permission denied",
			"ERROR:  permission denied to alter role\nDETAIL:  Only roles with the CREATEROLE attribute and the ADMIN option on role \"" + role + "\" may alter this role."},
		{"GRANT postgres TO self", fmt.Sprintf("GRANT postgres TO %s", role), "42501", "must be superuser",
			"ERROR:  permission denied to grant role \"postgres\"\nDETAIL:  Only roles with the SUPERUSER attribute may grant roles with the SUPERUSER attribute."},
		{"GRANT pg_execute_server_program TO self", fmt.Sprintf("GRANT pg_execute_server_program TO %s", role), "42501", "must have admin option on role",
			"ERROR:  permission denied to grant role \"pg_execute_server_program\"\nDETAIL:  Only roles with the ADMIN option on role \"pg_execute_server_program\" may grant this role."},
		// From 16 the missing CREATEROLE is checked first.
		{"CREATE ROLE SUPERUSER", fmt.Sprintf("CREATE ROLE %s SUPERUSER", evil), "42501", "must be superuser to create superusers",
			"ERROR:  permission denied to create role\nDETAIL:  Only roles with the CREATEROLE attribute may create roles."},
		{"CREATE ROLE", fmt.Sprintf("CREATE ROLE %s LOGIN", evil), "42501", "permission denied to create role",
			"ERROR:  permission denied to create role\nDETAIL:  Only roles with the CREATEROLE attribute may create roles."},
		{"COPY TO PROGRAM", fmt.Sprintf("COPY (SELECT 1) TO PROGRAM 'touch %s'", pwned), "42501", "pg_execute_server_program",
			"ERROR:  permission denied to COPY to or from an external program\nDETAIL:  Only roles with privileges of the \"pg_execute_server_program\" role may COPY to or from an external program."},
		{"ALTER SYSTEM", "ALTER SYSTEM SET work_mem = '1GB'", "42501", `permission denied to set parameter "work_mem"`, ""},
		{"CREATE EXTENSION dblink", "CREATE EXTENSION dblink", "42501", `permission denied to create extension "dblink"`, ""},
		{"C function", "CREATE FUNCTION " + evil + "_fn() RETURNS bigint AS 'lantern_async', 'lantern_async_task' LANGUAGE c", "42501", "permission denied for language c", ""},
		{"LOAD", "LOAD 'lantern_async'", "42501", `access to library "lantern_async" is not allowed`, ""},
		{"superuser-only setting", "SET session_replication_role = replica", "42501", `permission denied to set parameter "session_replication_role"`, ""},
	}
}

// escalationBaseline is the state a refused attack must leave unchanged
// (besides the absence of evil and pwned).
type escalationBaseline struct {
	attrs         roleAttrs
	ext, autoConf int // dblink extensions, work_mem lines in the configuration files
}

func readEscalationBaseline(t *testing.T, su *pgx.Conn, role string) escalationBaseline {
	t.Helper()
	return escalationBaseline{
		attrs:    readRoleAttrs(t, su, role),
		ext:      testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_extension WHERE extname = 'dblink'"),
		autoConf: testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_file_settings WHERE name = 'work_mem'"),
	}
}

// requireNothingEscalated asserts that role's attacks changed nothing:
// same attributes and memberships, no role evil, no file pwned, no new
// extension, postgresql.auto.conf unchanged, no function evil_fn.
func requireNothingEscalated(t *testing.T, su *pgx.Conn, before escalationBaseline, role, evil, pwned string) {
	t.Helper()
	require.Equal(t, before.attrs, readRoleAttrs(t, su, role), "the attacking role's attributes and memberships")
	require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_roles WHERE rolname = $1", evil), "role %s", evil)
	require.False(t, fileExists(pwned), "%s must not exist", pwned)
	require.Equal(t, before.ext, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_extension WHERE extname = 'dblink'"))
	require.Equal(t, before.autoConf, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_file_settings WHERE name = 'work_mem'"),
		"postgresql.auto.conf unchanged")
	require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM pg_proc WHERE proname = $1", evil+"_fn"))
}

// TestTaskPrivilegeEscalationRefused submits, as a plain LOGIN role, tasks
// that try to reach another identity or a superuser-only action. Each must
// fail with the error PostgreSQL gives that role in a normal session and
// change nothing; the role's next task (same worker, if it is still there)
// still runs as the role.
func TestTaskPrivilegeEscalationRefused(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewCreatorRole(t, su, "attacker")
	other := testkit.Ident(t, testkit.Uniq("notgranted"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE ROLE %s NOLOGIN", other))
	conn := testkit.Connect(t, role)
	who := whoTable(t, conn)
	evil := testkit.Ident(t, testkit.Uniq("evil"))
	pwned := fmt.Sprintf("/tmp/lantern_async_pwned_%d_%d", os.Getpid(), testkit.NameCounter.Add(1))
	require.False(t, fileExists(pwned))
	t.Cleanup(func() { _ = os.Remove(pwned) })

	before := readEscalationBaseline(t, su, role)
	require.Equal(t, roleAttrs{MemberOf: []string{}}, before.attrs, "a plain role")

	attacks := escalationAttacks(role, other, evil, pwned)
	taskMsgs := map[string]string{}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			label := testkit.Ident(t, testkit.Uniq("probe"))
			id := testkit.Submit(t, conn, a.sql)
			// Queued right behind it: likely run by the same worker process.
			probe := testkit.Submit(t, conn, probeQuery(who, label))

			msg := testkit.RequireFailedWithSQLState(t, conn, id, a.code)
			require.True(t, strings.HasPrefix(msg, "ERROR:  "), "error_message %q", msg)
			require.Contains(t, msg, a.want(t))
			taskMsgs[a.name] = msg
			requireProbeRanAs(t, conn, su, probe, who, label, role)
			requireNothingEscalated(t, su, before, role, evil, pwned)
		})
	}

	// The same statements from a client session of the role fail the same
	// way: a task has no more rights than the role's own session.
	for _, a := range attacks {
		_, err := conn.Exec(testkit.Ctx(t), a.sql)
		testkit.RequirePgError(t, err, a.code, "%s in a client session of %s", a.sql, role)
		require.Contains(t, testkit.ErrorText(err), a.want(t), "%s in a client session of %s", a.sql, role)
		require.Equal(t, testkit.ErrorText(err), strings.TrimRight(taskMsgs[a.name], "\n"), "%s: the task's error and the client session's", a.sql)
	}
	require.Equal(t, before.attrs, readRoleAttrs(t, su, role))
}

// TestTaskSetRoleToGrantedRole: SET ROLE to a role the submitter IS a member
// of works inside a task, with that role's privileges (normal SQL rules),
// and does not leak into the role's next task.
func TestTaskSetRoleToGrantedRole(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewCreatorRole(t, su, "member")
	group := testkit.Ident(t, testkit.Uniq("grp"))
	tbl := testkit.Ident(t, testkit.Uniq("grp_only"))
	// The role does not inherit the group's rights: without SET ROLE it has
	// none on the group's table, so the difference SET ROLE makes shows.
	// From 16 inheritance is a per-grant option (ALTER ROLE NOINHERIT no
	// longer changes existing grants); on 15 it is only the role attribute.
	grant := fmt.Sprintf("GRANT %s TO %s WITH INHERIT FALSE, SET TRUE", group, role)
	if testkit.ServerVersionNum(t) < 160000 {
		grant = fmt.Sprintf("GRANT %s TO %s; ALTER ROLE %[2]s NOINHERIT", group, role)
	}
	testkit.MustExec(t, su, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN; %[4]s; GRANT CREATE ON SCHEMA public TO %[1]s;
		CREATE TABLE %[3]s(cu text, su text); ALTER TABLE %[3]s OWNER TO %[1]s`, group, role, tbl, grant))
	conn := testkit.Connect(t, role)
	who := whoTable(t, conn)

	denied := testkit.Submit(t, conn, fmt.Sprintf("INSERT INTO %s SELECT current_user, session_user", tbl))
	msg := testkit.RequireFailedWithSQLState(t, conn, denied, "42501")
	require.Contains(t, msg, "permission denied for table "+tbl)

	id := testkit.Submit(t, conn, fmt.Sprintf("SET ROLE %s; INSERT INTO %s SELECT current_user, session_user", group, tbl))
	label := testkit.Ident(t, testkit.Uniq("after_setrole"))
	probe := testkit.Submit(t, conn, probeQuery(who, label))
	testkit.RequireSucceeded(t, conn, id)
	var cu, sessionUser string
	require.NoError(t, su.QueryRow(testkit.Ctx(t), fmt.Sprintf("SELECT cu, su FROM %s", tbl)).Scan(&cu, &sessionUser))
	require.Equal(t, group, cu, "current_user after SET ROLE inside the task")
	require.Equal(t, role, sessionUser, "session_user inside the task")
	requireProbeRanAs(t, conn, su, probe, who, label, role)

	// An object created after SET ROLE belongs to the group.
	created := testkit.Ident(t, testkit.Uniq("grp_created"))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, fmt.Sprintf("SET ROLE %s; CREATE TABLE %s(a int)", group, created)))
	require.Equal(t, group, testkit.TableOwner(t, su, created))
	require.Equal(t, role, testkit.GetTask(t, su, id).Username, "the task is still recorded as the submitter's")
}

// TestCannotSignalOthersProcesses: a role can terminate its own tasks'
// processes (TestTaskProcessTerminatedBySameRole) but not the launcher
// (a superuser process) nor another role's worker, neither from a client
// session nor from a task.
func TestCannotSignalOthersProcesses(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	attacker, victimRole := testkit.NewCreatorRole(t, su, "sigatk"), testkit.NewCreatorRole(t, su, "sigvic")
	conn, victimConn := testkit.Connect(t, attacker), testkit.Connect(t, victimRole)

	lock := testkit.HoldAdvisoryLock(t)
	victim := testkit.Submit(t, victimConn, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{victim})
	victimPid := testkit.WorkerPid(t, su, testkit.GetTask(t, su, victim).Query)
	launcher := testkit.LauncherPid(t, su)

	// The refusals as psql shows them; 16 reworded them (the reason moved
	// to a DETAIL).
	refusals := map[string]string{
		"launcher/pg_terminate_backend": "ERROR:  must be a superuser to terminate superuser process",
		"launcher/pg_cancel_backend":    "ERROR:  must be a superuser to cancel superuser query",
		"worker/pg_terminate_backend":   "ERROR:  must be a member of the role whose process is being terminated or member of pg_signal_backend",
		"worker/pg_cancel_backend":      "ERROR:  must be a member of the role whose query is being canceled or member of pg_signal_backend",
	}
	if testkit.ServerVersionNum(t) >= 160000 {
		refusals = map[string]string{
			"launcher/pg_terminate_backend": "ERROR:  permission denied to terminate process\n" +
				"DETAIL:  Only roles with the SUPERUSER attribute may terminate processes of roles with the SUPERUSER attribute.",
			"launcher/pg_cancel_backend": "ERROR:  permission denied to cancel query\n" +
				"DETAIL:  Only roles with the SUPERUSER attribute may cancel queries of roles with the SUPERUSER attribute.",
			"worker/pg_terminate_backend": "ERROR:  permission denied to terminate process\n" +
				`DETAIL:  Only roles with privileges of the role whose process is being terminated or with privileges of the "pg_signal_backend" role may terminate this process.`,
			"worker/pg_cancel_backend": "ERROR:  permission denied to cancel query\n" +
				`DETAIL:  Only roles with privileges of the role whose query is being canceled or with privileges of the "pg_signal_backend" role may cancel this query.`,
		}
	}
	for _, target := range []struct {
		name, key string
		pid       int
	}{
		{"launcher", "launcher", launcher},
		{"another role's worker", "worker", victimPid},
	} {
		for _, fn := range []string{"pg_terminate_backend", "pg_cancel_backend"} {
			want := refusals[target.key+"/"+fn]
			q := fmt.Sprintf("SELECT %s(%d)", fn, target.pid)
			_, err := conn.Exec(testkit.Ctx(t), q)
			testkit.RequirePgError(t, err, "42501", "%s on the %s from a client session", fn, target.name)
			require.Equal(t, want, testkit.ErrorText(err), "%s on the %s from a client session", fn, target.name)

			msg := testkit.RequireFailedWithSQLState(t, conn, testkit.Submit(t, conn, q), "42501")
			require.Equal(t, want, strings.TrimRight(msg, "\n"), "%s on the %s from a task", fn, target.name)
		}
	}
	require.Equal(t, launcher, testkit.LauncherPid(t, su))
	require.Equal(t, "running", testkit.Deref(testkit.GetTask(t, su, victim).Status))
	require.Equal(t, victimPid, testkit.WorkerPid(t, su, testkit.GetTask(t, su, victim).Query))
	lock.Release(t)
	testkit.RequireSucceeded(t, victimConn, victim)
}
