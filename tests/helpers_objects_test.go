package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Tables and roles made by the tests.

// tableExists reports whether a relation named name exists.
func tableExists(t *testing.T, name string) bool {
	t.Helper()
	return queryOne[bool](t, connect(t, superuser), "SELECT to_regclass($1) IS NOT NULL", name)
}

// tableOwner returns the owner of table public.tbl.
func tableOwner(t *testing.T, su *pgx.Conn, tbl string) string {
	t.Helper()
	return queryOne[string](t, su,
		"SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", tbl)
}

// markerTable creates a table marker(a int) for tasks to leave a trace in,
// readable and insertable by roles.
func markerTable(t *testing.T, su *pgx.Conn, base string, roles ...string) string {
	t.Helper()
	tbl := ident(t, uniq(base))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	if len(roles) > 0 {
		mustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO %s", tbl, strings.Join(roles, ", ")))
	}
	return tbl
}

// markerInsert is a task query that inserts v into a marker table.
func markerInsert(marker string, v int) string {
	return fmt.Sprintf("INSERT INTO %s VALUES (%d)", marker, v)
}

// markerValues returns the sorted contents of a marker table.
func markerValues(t *testing.T, marker string) []int {
	t.Helper()
	return queryAll[int](t, connect(t, superuser), fmt.Sprintf("SELECT a FROM %s ORDER BY a", marker))
}

// newLoginRole creates a fresh LOGIN role (fresh, so that no task of another
// test is ever queued for it).
func newLoginRole(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	r := ident(t, uniq(base))
	mustExec(t, su, fmt.Sprintf("CREATE ROLE %s LOGIN", r))
	return r
}

// newCreatorRole creates a fresh plain LOGIN role that may create tables in public.
func newCreatorRole(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	r := newLoginRole(t, su, base)
	mustExec(t, su, fmt.Sprintf("GRANT CREATE ON SCHEMA public TO %s", r))
	return r
}
