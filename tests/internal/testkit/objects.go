package testkit

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Tables and roles made by the tests.

// TableExists reports whether a relation named name exists.
func TableExists(t *testing.T, name string) bool {
	t.Helper()
	return QueryOne[bool](t, Connect(t, Superuser), "SELECT to_regclass($1) IS NOT NULL", name)
}

// TableOwner returns the owner of table public.tbl.
func TableOwner(t *testing.T, su *pgx.Conn, tbl string) string {
	t.Helper()
	return QueryOne[string](t, su,
		"SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", tbl)
}

// MarkerTable creates a table marker(a int) for tasks to leave a trace in,
// readable and insertable by roles.
func MarkerTable(t *testing.T, su *pgx.Conn, base string, roles ...string) string {
	t.Helper()
	tbl := Ident(t, Uniq(base))
	MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	if len(roles) > 0 {
		MustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO %s", tbl, strings.Join(roles, ", ")))
	}
	return tbl
}

// MarkerInsert is a task query that inserts v into a marker table.
func MarkerInsert(marker string, v int) string {
	return fmt.Sprintf("INSERT INTO %s VALUES (%d)", marker, v)
}

// MarkerValues returns the sorted contents of a marker table.
func MarkerValues(t *testing.T, marker string) []int {
	t.Helper()
	return QueryAll[int](t, Connect(t, Superuser), fmt.Sprintf("SELECT a FROM %s ORDER BY a", marker))
}

// NewLoginRole creates a fresh LOGIN role (fresh, so that no task of another
// test is ever queued for it).
func NewLoginRole(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	r := Ident(t, Uniq(base))
	MustExec(t, su, fmt.Sprintf("CREATE ROLE %s LOGIN", r))
	return r
}

// NewCreatorRole creates a fresh plain LOGIN role that may create tables in public.
func NewCreatorRole(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	r := NewLoginRole(t, su, base)
	MustExec(t, su, fmt.Sprintf("GRANT CREATE ON SCHEMA public TO %s", r))
	return r
}
