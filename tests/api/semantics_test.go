package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// These tests pin down the "psql -c" semantics of the query string.

func TestMultiStatementIsAtomic(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("m1"))
	id := testkit.Submit(t, su, fmt.Sprintf("CREATE TABLE %s(a int); SELECT 1/0", tbl))
	require.Equal(t, "ERROR:  division by zero", testkit.RequireFailedWithSQLState(t, su, id, "22012"))
	require.False(t, testkit.TableExists(t, tbl), "the failed string must leave no table %s", tbl)
}

func TestMultiStatementSucceeds(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("ms"))
	id := testkit.Submit(t, su, fmt.Sprintf(
		"CREATE TABLE %s(a int); INSERT INTO %[1]s VALUES (1), (2); CREATE INDEX ON %[1]s (a); SELECT count(*) FROM %[1]s", tbl))
	testkit.RequireSucceeded(t, su, id)
	require.Equal(t, 2, testkit.QueryOne[int](t, su, fmt.Sprintf("SELECT count(*)::int FROM %s", tbl)))
}

func TestExplicitTransactionBlock(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("tb"))
	id := testkit.Submit(t, su, fmt.Sprintf("BEGIN; CREATE TABLE %s(a int); INSERT INTO %[1]s VALUES (7); COMMIT;", tbl))
	testkit.RequireSucceeded(t, su, id)
	require.Equal(t, 7, testkit.QueryOne[int](t, su, fmt.Sprintf("SELECT a FROM %s", tbl)))
}

// With psql -c, an explicit COMMIT inside the string commits what precedes
// it even when a later statement fails.
func TestCommitInsideStringThenFailure(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("cf"))
	id := testkit.Submit(t, su, fmt.Sprintf("BEGIN; CREATE TABLE %s(a int); COMMIT; SELECT 1/0", tbl))
	require.Equal(t, "ERROR:  division by zero", testkit.RequireFailed(t, su, id))
	require.True(t, testkit.TableExists(t, tbl), "the committed block must stay committed")
}

func TestTransactionLeftOpen(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("x"))
	id := testkit.Submit(t, su, fmt.Sprintf("BEGIN; CREATE TABLE %s(a int)", tbl))
	msg := testkit.RequireFailed(t, su, id)
	t.Logf("error_message: %q", msg)
	low := strings.ToLower(msg)
	require.Contains(t, low, "transaction", "error_message: %q", msg)
	require.Contains(t, low, "rolled back", "error_message: %q", msg)
	require.False(t, testkit.TableExists(t, tbl), "the open transaction must be rolled back")
	require.NotNil(t, testkit.GetTask(t, su, id).Duration)
}

func TestCreateIndexConcurrently(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("cic"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int); INSERT INTO %[1]s SELECT generate_series(1, 10000)", tbl))
	id := testkit.Submit(t, su, fmt.Sprintf("CREATE INDEX CONCURRENTLY %s_idx ON %[1]s (a)", tbl))
	testkit.RequireSucceeded(t, su, id)
	require.True(t, testkit.QueryOne[bool](t, su,
		"SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = $1::regclass", tbl+"_idx"))
}

func TestCreateIndexConcurrentlyInMultiStatementFails(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("cicm"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	id := testkit.Submit(t, su, fmt.Sprintf("CREATE INDEX CONCURRENTLY %s_idx ON %[1]s (a); SELECT 1", tbl))
	require.Equal(t, "ERROR:  CREATE INDEX CONCURRENTLY cannot run inside a transaction block",
		testkit.RequireFailedWithSQLState(t, su, id, "25001"))
	require.False(t, testkit.TableExists(t, tbl+"_idx"))
}

func TestVacuumAnalyze(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("va"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int); INSERT INTO %[1]s SELECT generate_series(1, 100)", tbl))
	require.Equal(t, -1.0, testkit.QueryOne[float64](t, su, "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::regclass", tbl),
		"a new table has never been vacuumed or analyzed")

	id := testkit.Submit(t, su, fmt.Sprintf("VACUUM (ANALYZE) %s", tbl))
	testkit.RequireSucceeded(t, su, id)
	require.Equal(t, 100.0, testkit.QueryOne[float64](t, su, "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::regclass", tbl))
	require.Positive(t, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM pg_statistic WHERE starelid = $1::regclass", tbl), "ANALYZE wrote statistics")
}

func TestVacuumInMultiStatementFails(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("vm"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	id := testkit.Submit(t, su, fmt.Sprintf("VACUUM %s; SELECT 1", tbl))
	require.Equal(t, "ERROR:  VACUUM cannot run inside a transaction block",
		testkit.RequireFailedWithSQLState(t, su, id, "25001"))
}

func TestStatementsWithOutput(t *testing.T) {
	for name, q := range map[string]string{
		"many rows":          "SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
		"several results":    "SELECT 1; SELECT 'two'; VALUES (3), (4)",
		"notice and warning": "DO $$BEGIN RAISE NOTICE 'note'; RAISE WARNING 'warn'; END$$",
	} {
		t.Run(name, func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			testkit.RequireSucceeded(t, su, testkit.Submit(t, su, q))
		})
	}
}

// Each task gets a session of its own, like each psql -c invocation: session
// state (temporary tables, settings) does not carry over to later tasks.
func TestSessionStateNotShared(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tmp := testkit.Ident(t, testkit.Uniq("tmp"))
	out := testkit.Ident(t, testkit.Uniq("setting"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(v text)", out))

	testkit.RequireSucceeded(t, su, testkit.Submit(t, su,
		fmt.Sprintf("CREATE TEMP TABLE %s(a int); SET application_name = 'leaked_%s'; SET search_path = pg_catalog", tmp, out)))

	// A temporary table of an earlier task must not be visible.
	testkit.RequireFailedWithSQLState(t, su, testkit.Submit(t, su, fmt.Sprintf("SELECT * FROM %s", tmp)), "42P01")

	testkit.RequireSucceeded(t, su, testkit.Submit(t, su, fmt.Sprintf(
		"INSERT INTO public.%s VALUES (current_setting('application_name')), (current_setting('search_path'))", out)))
	for _, v := range testkit.QueryAll[string](t, su, fmt.Sprintf("SELECT v FROM %s", out)) {
		require.NotEqual(t, "leaked_"+out, v, "application_name leaked from an earlier task")
		require.NotEqual(t, "pg_catalog", v, "search_path leaked from an earlier task")
	}
}
