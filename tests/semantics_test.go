package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// These tests pin down the "psql -c" semantics of the query string.

func TestMultiStatementIsAtomic(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("m1"))
	id := submit(t, su, fmt.Sprintf("CREATE TABLE %s(a int); SELECT 1/0", tbl))
	require.Equal(t, "ERROR:  division by zero", requireFailedWithSQLState(t, su, id, "22012"))
	require.False(t, tableExists(t, tbl), "the failed string must leave no table %s", tbl)
}

func TestMultiStatementSucceeds(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("ms"))
	id := submit(t, su, fmt.Sprintf(
		"CREATE TABLE %s(a int); INSERT INTO %[1]s VALUES (1), (2); CREATE INDEX ON %[1]s (a); SELECT count(*) FROM %[1]s", tbl))
	requireSucceeded(t, su, id)
	require.Equal(t, 2, queryOne[int](t, su, fmt.Sprintf("SELECT count(*)::int FROM %s", tbl)))
}

func TestExplicitTransactionBlock(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("tb"))
	id := submit(t, su, fmt.Sprintf("BEGIN; CREATE TABLE %s(a int); INSERT INTO %[1]s VALUES (7); COMMIT;", tbl))
	requireSucceeded(t, su, id)
	require.Equal(t, 7, queryOne[int](t, su, fmt.Sprintf("SELECT a FROM %s", tbl)))
}

// With psql -c, an explicit COMMIT inside the string commits what precedes
// it even when a later statement fails.
func TestCommitInsideStringThenFailure(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("cf"))
	id := submit(t, su, fmt.Sprintf("BEGIN; CREATE TABLE %s(a int); COMMIT; SELECT 1/0", tbl))
	require.Equal(t, "ERROR:  division by zero", requireFailed(t, su, id))
	require.True(t, tableExists(t, tbl), "the committed block must stay committed")
}

func TestTransactionLeftOpen(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("x"))
	id := submit(t, su, fmt.Sprintf("BEGIN; CREATE TABLE %s(a int)", tbl))
	msg := requireFailed(t, su, id)
	t.Logf("error_message: %q", msg)
	low := strings.ToLower(msg)
	require.Contains(t, low, "transaction", "error_message: %q", msg)
	require.Contains(t, low, "rolled back", "error_message: %q", msg)
	require.False(t, tableExists(t, tbl), "the open transaction must be rolled back")
	require.NotNil(t, getTask(t, su, id).Duration)
}

func TestCreateIndexConcurrently(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("cic"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int); INSERT INTO %[1]s SELECT generate_series(1, 10000)", tbl))
	id := submit(t, su, fmt.Sprintf("CREATE INDEX CONCURRENTLY %s_idx ON %[1]s (a)", tbl))
	requireSucceeded(t, su, id)
	require.True(t, queryOne[bool](t, su,
		"SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = $1::regclass", tbl+"_idx"))
}

func TestCreateIndexConcurrentlyInMultiStatementFails(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("cicm"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	id := submit(t, su, fmt.Sprintf("CREATE INDEX CONCURRENTLY %s_idx ON %[1]s (a); SELECT 1", tbl))
	require.Equal(t, "ERROR:  CREATE INDEX CONCURRENTLY cannot run inside a transaction block",
		requireFailedWithSQLState(t, su, id, "25001"))
	require.False(t, tableExists(t, tbl+"_idx"))
}

func TestVacuumAnalyze(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("va"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int); INSERT INTO %[1]s SELECT generate_series(1, 100)", tbl))
	require.Equal(t, -1.0, queryOne[float64](t, su, "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::regclass", tbl),
		"a new table has never been vacuumed or analyzed")

	id := submit(t, su, fmt.Sprintf("VACUUM (ANALYZE) %s", tbl))
	requireSucceeded(t, su, id)
	require.Equal(t, 100.0, queryOne[float64](t, su, "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::regclass", tbl))
	require.Positive(t, queryOne[int](t, su,
		"SELECT count(*)::int FROM pg_statistic WHERE starelid = $1::regclass", tbl), "ANALYZE wrote statistics")
}

func TestVacuumInMultiStatementFails(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("vm"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	id := submit(t, su, fmt.Sprintf("VACUUM %s; SELECT 1", tbl))
	require.Equal(t, "ERROR:  VACUUM cannot run inside a transaction block",
		requireFailedWithSQLState(t, su, id, "25001"))
}

func TestStatementsWithOutput(t *testing.T) {
	for name, q := range map[string]string{
		"many rows":          "SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
		"several results":    "SELECT 1; SELECT 'two'; VALUES (3), (4)",
		"notice and warning": "DO $$BEGIN RAISE NOTICE 'note'; RAISE WARNING 'warn'; END$$",
	} {
		t.Run(name, func(t *testing.T) {
			begin(t)
			su := connect(t, superuser)
			requireSucceeded(t, su, submit(t, su, q))
		})
	}
}

// Each task gets a session of its own, like each psql -c invocation: session
// state (temporary tables, settings) does not carry over to later tasks.
func TestSessionStateNotShared(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tmp := ident(t, uniq("tmp"))
	out := ident(t, uniq("setting"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(v text)", out))

	requireSucceeded(t, su, submit(t, su,
		fmt.Sprintf("CREATE TEMP TABLE %s(a int); SET application_name = 'leaked_%s'; SET search_path = pg_catalog", tmp, out)))

	// A temporary table of an earlier task must not be visible.
	requireFailedWithSQLState(t, su, submit(t, su, fmt.Sprintf("SELECT * FROM %s", tmp)), "42P01")

	requireSucceeded(t, su, submit(t, su, fmt.Sprintf(
		"INSERT INTO public.%s VALUES (current_setting('application_name')), (current_setting('search_path'))", out)))
	for _, v := range queryAll[string](t, su, fmt.Sprintf("SELECT v FROM %s", out)) {
		require.NotEqual(t, "leaked_"+out, v, "application_name leaked from an earlier task")
		require.NotEqual(t, "pg_catalog", v, "search_path leaked from an earlier task")
	}
}
