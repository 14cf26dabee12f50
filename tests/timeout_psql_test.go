package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// statement_timeout applies per statement, as to psql -c on PostgreSQL 15:
// exec_simple_query disarms it after every statement of a multi-statement
// string but the last (`psql -c "SET statement_timeout='700ms'; SELECT
// pg_sleep(0.5); SELECT pg_sleep(0.5)"` succeeds, also with BEGIN ...
// COMMIT around the sleeps). README, "What a task's query can be".

// TestStatementTimeoutPerStatementLikePsql: two statements of 0.5 s under
// a 700 ms statement_timeout set in the string succeed (also in one
// transaction block), one statement that runs over fails with 57014.
func TestStatementTimeoutPerStatementLikePsql(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "stmt_each")
	conn := connect(t, role)
	ok := []int64{
		submit(t, conn, "SET statement_timeout = '700ms'; SELECT pg_sleep(0.5); SELECT pg_sleep(0.5)"),
		submit(t, conn, "SET statement_timeout = '700ms'; BEGIN; SELECT pg_sleep(0.5); SELECT pg_sleep(0.5); COMMIT"),
	}
	over := submit(t, conn, "SET statement_timeout = '300ms'; SELECT pg_sleep(0.6)")
	requireSucceeded(t, conn, ok...)
	requireFailedLike(t, conn, over, "57014", msgStatementTimeout)
}

// TestRoleStatementTimeoutPerStatement: the same with ALTER ROLE ... SET
// statement_timeout.
func TestRoleStatementTimeoutPerStatement(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "stmt_role")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET statement_timeout = '700ms'", role))
	conn := connect(t, role)
	ok := []int64{
		submit(t, conn, "SELECT pg_sleep(0.5); SELECT pg_sleep(0.5)"),
		submit(t, conn, "BEGIN; SELECT pg_sleep(0.5); SELECT pg_sleep(0.5); COMMIT"),
	}
	over := submit(t, conn, "SELECT pg_sleep(1)")
	requireSucceeded(t, conn, ok...)
	requireFailedLike(t, conn, over, "57014", msgStatementTimeout)
}

// setSystemAtEnd runs ALTER SYSTEM SET name = value, reloads and waits
// until a new session shows value; the test's end resets it the same way
// (until a new session shows defaultValue).
func setSystemAtEnd(t *testing.T, name, value, defaultValue string) {
	t.Helper()
	t.Cleanup(func() {
		cleanupExec(t, "ALTER SYSTEM RESET "+name)
		cleanupExec(t, "SELECT pg_reload_conf()")
		waitNewSessionSetting(t, name, defaultValue)
	})
	su := connect(t, superuser)
	mustExec(t, su, fmt.Sprintf("ALTER SYSTEM SET %s = %s", name, lit(value)))
	mustExec(t, su, "SELECT pg_reload_conf()")
	waitNewSessionSetting(t, name, value)
}

// waitNewSessionSetting waits until a new session (forked by the
// postmaster, as workers are) shows want for the setting name.
func waitNewSessionSetting(t *testing.T, name, want string) {
	t.Helper()
	ok, last := poll(t, waitTimeout, func() (bool, string) {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := cluster.Connect(c, dbName, superuser)
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close(context.Background())
		var got string
		if err := conn.QueryRow(c, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			return false, err.Error()
		}
		return got == want, fmt.Sprintf("%s = %q", name, got)
	}, "the postmaster to reload its configuration")
	if !ok {
		t.Errorf("%s not %q in a new session: %s", name, want, last)
	}
}

// TestStatementTimeoutFromConfig: statement_timeout in postgresql.conf
// (ALTER SYSTEM) applies per statement: two statements of 1 s under
// 1500 ms succeed, one of 3 s fails with 57014; other roles' tasks are fine.
func TestStatementTimeoutFromConfig(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "stmt_conf")
	setSystemAtEnd(t, "statement_timeout", "1500ms", "0")
	conn := connect(t, role)
	each := submit(t, conn, "SELECT pg_sleep(1); SELECT pg_sleep(1)")
	over := submit(t, conn, "SELECT pg_sleep(3)")
	requireSucceeded(t, conn, each)
	requireFailedLike(t, conn, over, "57014", msgStatementTimeout)
	bob := connect(t, "bob")
	requireSucceeded(t, bob, submit(t, bob, "SELECT pg_sleep(0.2)"))
	requireSucceeded(t, conn, submit(t, conn, "SELECT 1"))
}

// TestSetLocalTimeouts: SET LOCAL statement_timeout / lock_timeout inside
// BEGIN ... COMMIT stop the task (57014 / 55P03); the role's next task
// runs without them.
func TestSetLocalTimeouts(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "set_local")
	conn := connect(t, role)
	marker := markerTable(t, su, "set_local", role)
	id := submit(t, conn, "BEGIN; SET LOCAL statement_timeout = '200ms'; SELECT pg_sleep(2); COMMIT")
	requireFailedLike(t, conn, id, "57014", msgStatementTimeout)
	requireQuickFailure(t, id)

	holder := connect(t, superuser)
	tx := beginHeld(t, holder)
	mustExec(t, holder, fmt.Sprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", marker))
	id = submit(t, conn, fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = '200ms'; INSERT INTO %s VALUES (1); COMMIT", marker))
	requireFailedLike(t, conn, id, "55P03", msgLockTimeout)
	tx.end(t, "COMMIT")
	requireSucceeded(t, conn, submit(t, conn, fmt.Sprintf("SELECT pg_sleep(0.5); INSERT INTO %s VALUES (2)", marker)))
	require.Equal(t, []int{2}, markerValues(t, marker))
}
