package security

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Privilege isolation of the queue: lantern.tasks and lantern.task_errors can
// only be changed through the extension, from a client session or a task.

// queueRows are the finished tasks of TestQueueProtections: one succeeded
// and one failed task of each of two roles a and b.
type queueRows struct {
	aOK, aFail, bOK, bFail int64
}

func newQueueRows(t *testing.T, a, b *pgx.Conn) queueRows {
	t.Helper()
	q := queueRows{
		aOK:   testkit.SubmitNamed(t, a, "SELECT 1", "a ok"),
		aFail: testkit.Submit(t, a, "SELECT 1/0"),
		bOK:   testkit.SubmitNamed(t, b, "SELECT 2", "b ok"),
		bFail: testkit.Submit(t, b, "SELECT 2/0"),
	}
	testkit.RequireSucceeded(t, a, q.aOK)
	testkit.RequireFailed(t, a, q.aFail)
	testkit.RequireSucceeded(t, b, q.bOK)
	testkit.RequireFailed(t, b, q.bFail)
	return q
}

func (q queueRows) all() []int64 {
	return []int64{q.aOK, q.aFail, q.bOK, q.bFail}
}

// snapshot renders the rows (and their lantern.task_errors rows) as text.
func (q queueRows) snapshot(t *testing.T, su *pgx.Conn) string {
	t.Helper()
	return testkit.QueryOne[string](t, su, `
		SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s', t.jobid, t.query, t.job_name, t.username, t.status,
		                         t.duration, t.error_message, e.sqlstate), E'\n' ORDER BY t.jobid)
		FROM lantern.tasks t LEFT JOIN lantern.task_errors e USING (jobid) WHERE t.jobid = ANY($1)`,
		q.all())
}

// queueWriteStatements are the statements by which a role tries to change
// the queue (rows of its own and of roleB, the tables, their policies, the
// jobid sequence) outside the extension's functions.
func queueWriteStatements(q queueRows, roleB string) []string {
	var stmts []string
	for _, id := range []int64{q.aOK, q.bOK} {
		for _, set := range []string{
			"status = 'pending'", "status = 'succeeded'", "query = 'SELECT 666'", "username = 'postgres'",
			"error_message = NULL", "duration = NULL", "job_name = 'x'", "started_at = now()",
		} {
			stmts = append(stmts, fmt.Sprintf("UPDATE lantern.tasks SET %s WHERE jobid = %d", set, id))
		}
		stmts = append(stmts, fmt.Sprintf("DELETE FROM lantern.tasks WHERE jobid = %d", id))
	}
	return append(stmts,
		"INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'postgres')",
		fmt.Sprintf("INSERT INTO lantern.tasks (query, username, status) VALUES ('SELECT 1', %s, 'pending')", testkit.Lit(roleB)),
		"DELETE FROM lantern.tasks",
		"UPDATE lantern.tasks SET status = 'failed'",
		"TRUNCATE lantern.tasks",
		"TRUNCATE lantern.task_errors",
		"TRUNCATE lantern.tasks CASCADE",
		fmt.Sprintf("UPDATE lantern.task_errors SET sqlstate = '00000' WHERE jobid = %d", q.aFail),
		fmt.Sprintf("DELETE FROM lantern.task_errors WHERE jobid = %d", q.bFail),
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
}

// requireQueueLockRefused: role (on conn) cannot LOCK lantern.tasks in any
// mode. LOCK needs a transaction block; a lock on the queue would stall
// every worker's claim.
func requireQueueLockRefused(t *testing.T, conn *pgx.Conn, role string) {
	t.Helper()
	for _, mode := range []string{"ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE", "ROW EXCLUSIVE"} {
		tx, err := conn.Begin(testkit.Ctx(t))
		require.NoError(t, err)
		_, err = tx.Exec(testkit.Ctx(t), "LOCK TABLE lantern.tasks IN "+mode+" MODE")
		testkit.RequirePgError(t, err, "42501", "LOCK TABLE lantern.tasks IN %s MODE as %s", mode, role)
		require.NoError(t, tx.Rollback(testkit.Ctx(t)))
	}
}

// requireTaskErrorsOwnRowsOnly: each of a and b sees its own
// lantern.task_errors rows only; the superuser sees every row.
func requireTaskErrorsOwnRowsOnly(t *testing.T, su, a, b *pgx.Conn, q queueRows) {
	t.Helper()
	require.Equal(t, 1, testkit.QueryOne[int](t, a, "SELECT count(*)::int FROM lantern.task_errors WHERE jobid = $1", q.aFail))
	require.Equal(t, 0, testkit.QueryOne[int](t, a, "SELECT count(*)::int FROM lantern.task_errors WHERE jobid = $1", q.bFail))
	require.Equal(t, 0, testkit.QueryOne[int](t, b, "SELECT count(*)::int FROM lantern.task_errors WHERE jobid = $1", q.aFail))
	require.Equal(t, 1, testkit.QueryOne[int](t, b, "SELECT count(*)::int FROM lantern.task_errors WHERE jobid = $1", q.bFail))
	require.Equal(t, 0, testkit.QueryOne[int](t, a, `SELECT count(*)::int FROM lantern.task_errors e
		WHERE NOT EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid = e.jobid AND t.username = current_user)`),
		"every lantern.task_errors row visible to a role is one of its own tasks")
	require.Greater(t, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.task_errors"), 1, "the superuser sees every row")
}

// requireViewOwnRowsOnly: through a view a creates over both tables (and
// grants to roleB), each of a and b still sees its own rows only.
func requireViewOwnRowsOnly(t *testing.T, a, b *pgx.Conn, roleB string, q queueRows) {
	t.Helper()
	view := testkit.Ident(t, testkit.Uniq("tasks_view"))
	// A view over the extension's tables would block a later DROP EXTENSION.
	t.Cleanup(func() { _ = testkit.Cluster.Exec(context.Background(), testkit.DBName, "DROP VIEW IF EXISTS "+view) })
	testkit.MustExec(t, a, fmt.Sprintf("CREATE VIEW %s AS SELECT t.jobid, t.username, e.sqlstate FROM lantern.tasks t LEFT JOIN lantern.task_errors e USING (jobid)", view))
	testkit.MustExec(t, a, fmt.Sprintf("GRANT SELECT ON %s TO %s", view, roleB))
	require.Equal(t, 0, testkit.QueryOne[int](t, a, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE username <> current_user", view)))
	require.Equal(t, 2, testkit.QueryOne[int](t, a, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE jobid = ANY($1)", view),
		q.all()))
	// A view does not switch CURRENT_USER at execution, so the policy still
	// compares with the reader: b sees its own rows through a's view and
	// none of a's.
	require.Equal(t, 0, testkit.QueryOne[int](t, b, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE jobid = ANY($1)", view),
		[]int64{q.aOK, q.aFail}), "b reading through a's view must not see a's rows")
	require.Equal(t, 0, testkit.QueryOne[int](t, b, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE username <> current_user", view)))
}

// TestQueueProtections extends TestTasksNotWritableByUsers: no column of
// one's own or another role's row can be updated, no row deleted, neither
// table truncated or locked against the workers, the jobid sequence is out
// of reach, and row-level security also hides other roles' lantern.task_errors
// rows, also through a view the role owns.
func TestQueueProtections(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	roleA, roleB := testkit.NewCreatorRole(t, su, "qa"), testkit.NewCreatorRole(t, su, "qb")
	a, b := testkit.Connect(t, roleA), testkit.Connect(t, roleB)
	q := newQueueRows(t, a, b)
	before := q.snapshot(t, su)
	seqBefore := testkit.QueryOne[int64](t, su, "SELECT last_value FROM lantern.tasks_jobid_seq")

	for _, stmt := range queueWriteStatements(q, roleB) {
		_, err := a.Exec(testkit.Ctx(t), stmt)
		testkit.RequirePgError(t, err, "42501", "%s as %s", stmt, roleA)
	}
	requireQueueLockRefused(t, a, roleA)
	require.Equal(t, before, q.snapshot(t, su), "the rows are unchanged")
	require.Equal(t, seqBefore, testkit.QueryOne[int64](t, su, "SELECT last_value FROM lantern.tasks_jobid_seq"), "the jobid sequence is unchanged")

	// Reading: own rows only, in both tables, also through a view the role
	// owns (the view runs with its owner's rights, and RLS applies to it).
	requireTaskErrorsOwnRowsOnly(t, su, a, b, q)
	requireViewOwnRowsOnly(t, a, b, roleB, q)
}

// TestTaskCannotTouchQueue: a task runs in the worker process that also
// does the bookkeeping, but its SQL has only its role's rights on the queue:
// it cannot write or forge rows (a forged 'pending' row of postgres would
// run as a superuser), read other roles' rows, or draw jobids. A task may
// submit another task, which is recorded as the same role.
func TestTaskCannotTouchQueue(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewCreatorRole(t, su, "intask")
	conn := testkit.Connect(t, role)
	out := testkit.Ident(t, testkit.Uniq("intask_out"))
	testkit.MustExec(t, conn, fmt.Sprintf("CREATE TABLE %s(label text, n bigint, cu text)", out))
	first := testkit.Submit(t, conn, "SELECT 1")
	testkit.RequireSucceeded(t, conn, first)
	other := testkit.Submit(t, testkit.Connect(t, "bob"), "SELECT 'bob'")
	testkit.RequireSucceeded(t, su, other)
	forged := "SELECT 'forged by " + role + "'"

	for _, q := range []string{
		fmt.Sprintf("UPDATE lantern.tasks SET status = 'pending' WHERE jobid = %d", first),
		fmt.Sprintf("UPDATE lantern.tasks SET query = 'SELECT 666' WHERE jobid = %d", other),
		"UPDATE lantern.tasks SET status = 'failed' WHERE status = 'running'",
		fmt.Sprintf("DELETE FROM lantern.tasks WHERE jobid = %d", first),
		fmt.Sprintf("INSERT INTO lantern.tasks(query, username, status) VALUES (%s, 'postgres', 'pending')", testkit.Lit(forged)),
		fmt.Sprintf("INSERT INTO lantern.tasks(query) VALUES (%s)", testkit.Lit(forged)),
		"TRUNCATE lantern.tasks",
		"SELECT nextval('lantern.tasks_jobid_seq')",
		"SELECT jobid FROM lantern.tasks FOR UPDATE",
		"BEGIN; LOCK TABLE lantern.tasks IN ACCESS EXCLUSIVE MODE; COMMIT",
		"ALTER TABLE lantern.tasks DISABLE ROW LEVEL SECURITY",
	} {
		id := testkit.Submit(t, conn, q)
		msg := testkit.RequireFailed(t, conn, id)
		require.Contains(t, msg, "ERROR:  ", q)
		require.Equal(t, "42501", testkit.TaskSQLState(t, id), "task %q: %s", q, msg)
	}
	require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE query = $1", forged), "no forged row")
	require.Equal(t, "SELECT 'bob'", testkit.GetTask(t, su, other).Query)
	require.Equal(t, "succeeded", testkit.Deref(testkit.GetTask(t, su, first).Status))

	// Reads see the role's own rows only.
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, fmt.Sprintf(
		"INSERT INTO %s SELECT 'others', count(*), current_user FROM lantern.tasks WHERE username <> current_user", out)))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, fmt.Sprintf(
		"INSERT INTO %s SELECT 'other errors', count(*), current_user FROM lantern.task_errors e WHERE jobid NOT IN (SELECT jobid FROM lantern.tasks WHERE username = current_user)", out)))
	require.Equal(t, int64(0), testkit.QueryOne[int64](t, su, fmt.Sprintf("SELECT n FROM %s WHERE label = 'others'", out)))
	require.Equal(t, int64(0), testkit.QueryOne[int64](t, su, fmt.Sprintf("SELECT n FROM %s WHERE label = 'other errors'", out)))

	requireNestedTaskRunsAsRole(t, su, conn, role)
}

// requireNestedTaskRunsAsRole: a task of role (on conn) submitting a task:
// the nested task is recorded as the same role and runs as it.
func requireNestedTaskRunsAsRole(t *testing.T, su, conn *pgx.Conn, role string) {
	t.Helper()
	nestedOut := testkit.Ident(t, testkit.Uniq("nested"))
	parent := testkit.Submit(t, conn, fmt.Sprintf("SELECT lantern.async_task(%s, 'nested')",
		testkit.Lit(fmt.Sprintf("CREATE TABLE %s AS SELECT session_user::text AS su, current_user::text AS cu", nestedOut))))
	testkit.RequireSucceeded(t, conn, parent)
	var nested int64
	testkit.RequirePoll(t, testkit.WaitTimeout, "the nested task to be visible", testkit.WhileConnected(su, func() (bool, string) {
		err := su.QueryRow(testkit.Ctx(t), "SELECT jobid FROM lantern.tasks WHERE job_name = 'nested' AND jobid > $1 AND username = $2",
			parent, role).Scan(&nested)
		return err == nil, fmt.Sprint(err)
	}))
	testkit.RequireSucceeded(t, conn, nested)
	var sessionUser, currentUser string
	require.NoError(t, su.QueryRow(testkit.Ctx(t), "SELECT su, cu FROM "+nestedOut).Scan(&sessionUser, &currentUser))
	require.Equal(t, []string{role, role}, []string{sessionUser, currentUser})
	require.Equal(t, role, testkit.TableOwner(t, su, nestedOut))
}

// TestSecurityDefinerHygiene: any SECURITY DEFINER function in schema
// lantern must pin search_path (to schemas a caller cannot write to).
// Today there is none: async_task and the cancel functions are SECURITY
// INVOKER C functions that switch to the bootstrap superuser inside C, with
// search_path pinned there (cgo/loader/tables/privilege.c); the test then also
// checks that every function of the schema is such a C function, so that a
// SQL or PL/pgSQL function added later without SECURITY DEFINER cannot be
// relying on rights its callers lack.
func TestSecurityDefinerHygiene(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	rows, err := su.Query(testkit.Ctx(t), `
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
	require.Equal(t, 0, testkit.QueryOne[int](t, su, `
		SELECT count(*)::int FROM pg_namespace n, aclexplode(n.nspacl) a
		WHERE n.nspname = 'lantern' AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner`),
		"CREATE on schema lantern granted to a role other than its owner")
	require.False(t, testkit.QueryOne[bool](t, su, "SELECT has_schema_privilege('alice', 'lantern', 'CREATE')"))
}
