package api

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// column describes one attribute as the catalogs report it.
type column struct {
	Name    string
	Type    string
	NotNull bool
	Default *string
}

func strp(s string) *string { return &s }

func tableColumns(t *testing.T, table string) []column {
	t.Helper()
	conn := testkit.Connect(t, testkit.Superuser)
	rows, err := conn.Query(testkit.Ctx(t), `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		       pg_get_expr(d.adbin, d.adrelid)
		FROM pg_attribute a
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, table)
	require.NoError(t, err)
	var cols []column
	for rows.Next() {
		var c column
		require.NoError(t, rows.Scan(&c.Name, &c.Type, &c.NotNull, &c.Default))
		cols = append(cols, c)
	}
	require.NoError(t, rows.Err())
	return cols
}

func TestTasksTableStructure(t *testing.T) {
	testkit.Begin(t)
	want := []column{
		{"jobid", "bigint", true, strp("nextval('lantern.tasks_jobid_seq'::regclass)")},
		{"query", "text", true, nil},
		{"pg_cron_job_name", "text", false, nil},
		{"job_name", "text", false, nil},
		{"username", "text", true, strp("CURRENT_USER")},
		{"started_at", "timestamp with time zone", true, strp("now()")},
		{"duration", "interval", false, nil},
		{"status", "text", false, nil},
		{"error_message", "text", false, nil},
	}
	require.Equal(t, want, tableColumns(t, "lantern.tasks"))

	// The same through information_schema (column order and defaults).
	conn := testkit.Connect(t, testkit.Superuser)
	rows, err := conn.Query(testkit.Ctx(t), `
		SELECT column_name, data_type, is_nullable, column_default
		FROM information_schema.columns
		WHERE table_schema = 'lantern' AND table_name = 'tasks'
		ORDER BY ordinal_position`)
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var name, typ, nullable string
		var def *string
		require.NoError(t, rows.Scan(&name, &typ, &nullable, &def))
		got = append(got, fmt.Sprintf("%s %s %s %s", name, typ, nullable, testkit.Deref(def)))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{
		"jobid bigint NO nextval('lantern.tasks_jobid_seq'::regclass)",
		"query text NO ",
		"pg_cron_job_name text YES ",
		"job_name text YES ",
		"username text NO CURRENT_USER",
		"started_at timestamp with time zone NO now()",
		"duration interval YES ",
		"status text YES ",
		"error_message text YES ",
	}, got)

	require.Equal(t, "S", testkit.QueryOne[string](t, conn,
		"SELECT relkind::text FROM pg_class WHERE oid = to_regclass('lantern.tasks_jobid_seq')"),
		"sequence lantern.tasks_jobid_seq")
	require.True(t, testkit.QueryOne[bool](t, conn,
		"SELECT relrowsecurity FROM pg_class WHERE oid = 'lantern.tasks'::regclass"),
		"row-level security must be enabled on lantern.tasks")
}

func TestTaskErrorsTableStructure(t *testing.T) {
	testkit.Begin(t)
	require.Equal(t, []column{
		{"jobid", "bigint", true, nil},
		{"sqlstate", "text", true, nil},
	}, tableColumns(t, "lantern.task_errors"))

	conn := testkit.Connect(t, testkit.Superuser)
	pk := testkit.QueryOne[[]string](t, conn, `
		SELECT array_agg(a.attname::text ORDER BY a.attnum)
		FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = 'lantern.task_errors'::regclass AND i.indisprimary`)
	require.Equal(t, []string{"jobid"}, pk, "primary key of lantern.task_errors")
}

func TestSchemaAndFunctions(t *testing.T) {
	testkit.Begin(t)
	conn := testkit.Connect(t, testkit.Superuser)
	require.Equal(t, 1, testkit.QueryOne[int](t, conn, "SELECT count(*)::int FROM pg_namespace WHERE nspname = 'lantern'"))
	require.Equal(t, 1, testkit.QueryOne[int](t, conn,
		"SELECT count(*)::int FROM pg_extension WHERE extname = 'lantern_async'"))

	rows, err := conn.Query(testkit.Ctx(t), `
		SELECT pg_get_function_identity_arguments(p.oid), p.prorettype::regtype::text, p.proretset
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'lantern' AND p.proname = 'async_task'
		ORDER BY p.pronargs`)
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var args, ret string
		var set bool
		require.NoError(t, rows.Scan(&args, &ret, &set))
		got = append(got, fmt.Sprintf("async_task(%s) returns %s setof=%v", args, ret, set))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{
		"async_task(query text, job_name text, timeout interval, run_after timestamp with time zone, retries integer, depends_on bigint[]) returns bigint setof=false",
	}, got, "one function, its optional parameters with defaults")

	// Named notation works with those parameter names.
	id := testkit.QueryOne[int64](t, conn, "SELECT lantern.async_task(query => 'SELECT 1', job_name => 'named notation')")
	testkit.RequireSucceeded(t, conn, id)
	require.Equal(t, "named notation", testkit.Deref(testkit.GetTask(t, conn, id).JobName))

	// Every call of the three former overloads means what it meant.
	for _, call := range []string{
		"lantern.async_task('SELECT 1')",
		"lantern.async_task('SELECT 1', 'by position')",
		"lantern.async_task('SELECT 1', 'by position', '1 min')",
		"lantern.async_task('SELECT 1', NULL, NULL)",
		"lantern.async_task(query => 'SELECT 1', timeout => '1 min')",
	} {
		testkit.RequireSucceeded(t, conn, testkit.QueryOne[int64](t, conn, "SELECT "+call))
	}
}

// Every database is served: the extension can be created anywhere, and
// its tasks run there, in that database.
func TestCreateExtensionInOtherDatabase(t *testing.T) {
	testkit.Begin(t)
	db := testkit.Ident(t, testkit.Uniq("other"))
	su := testkit.Connect(t, testkit.Superuser)
	testkit.MustExec(t, su, "CREATE DATABASE "+db)
	t.Cleanup(func() { testkit.CleanupExec(t, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") })

	other := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
	testkit.MustExec(t, other, "CREATE EXTENSION lantern_async")
	require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), other))
	testkit.MustExec(t, other, "CREATE TABLE ran_in (db name)")
	id := testkit.Submit(t, other, "INSERT INTO ran_in SELECT current_database()")
	testkit.RequireSucceeded(t, other, id)
	require.Equal(t, []string{db}, testkit.QueryAll[string](t, other, "SELECT db::text FROM ran_in"))
	require.Equal(t, db, testkit.QueryOne[string](t, other, "SHOW lantern_async.database"),
		"unset, lantern_async.database shows the database the session is in")
}

func TestBackgroundProcesses(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	n, err := testkit.CountBackends(su, testkit.BackendLauncher)
	require.NoError(t, err)
	require.Equal(t, 1, n, "exactly one %q", testkit.BackendLauncher)

	// Idle: no worker (earlier tests' workers may take a moment to exit).
	testkit.WaitWorkerCount(t, su, 0, "no "+testkit.BackendWorker+" while idle")

	id := testkit.Submit(t, su, "SELECT pg_sleep(2)")
	testkit.WaitWorkerCount(t, su, 1, "a "+testkit.BackendWorker+" while the task runs")
	testkit.RequireSucceeded(t, su, id)
	testkit.WaitWorkerCount(t, su, 0, "the worker to go away after the task")
	n, err = testkit.CountBackends(su, testkit.BackendLauncher)
	require.NoError(t, err)
	require.Equal(t, 1, n, "still exactly one %q", testkit.BackendLauncher)
}
