package timeouts

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

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
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "stmt_each")
	conn := testkit.Connect(t, role)
	ok := []int64{
		testkit.Submit(t, conn, "SET statement_timeout = '700ms'; SELECT pg_sleep(0.5); SELECT pg_sleep(0.5)"),
		testkit.Submit(t, conn, "SET statement_timeout = '700ms'; BEGIN; SELECT pg_sleep(0.5); SELECT pg_sleep(0.5); COMMIT"),
	}
	over := testkit.Submit(t, conn, "SET statement_timeout = '300ms'; SELECT pg_sleep(0.6)")
	testkit.RequireSucceeded(t, conn, ok...)
	testkit.RequireFailedLike(t, conn, over, "57014", msgStatementTimeout)
}

// TestRoleStatementTimeoutPerStatement: the same with ALTER ROLE ... SET
// statement_timeout.
func TestRoleStatementTimeoutPerStatement(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "stmt_role")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET statement_timeout = '700ms'", role))
	conn := testkit.Connect(t, role)
	ok := []int64{
		testkit.Submit(t, conn, "SELECT pg_sleep(0.5); SELECT pg_sleep(0.5)"),
		testkit.Submit(t, conn, "BEGIN; SELECT pg_sleep(0.5); SELECT pg_sleep(0.5); COMMIT"),
	}
	over := testkit.Submit(t, conn, "SELECT pg_sleep(1)")
	testkit.RequireSucceeded(t, conn, ok...)
	testkit.RequireFailedLike(t, conn, over, "57014", msgStatementTimeout)
}

// setSystemAtEnd runs ALTER SYSTEM SET name = value, reloads and waits
// until a new session shows value; the test's end resets it the same way
// (until a new session shows defaultValue).
func setSystemAtEnd(t *testing.T, name, value, defaultValue string) {
	t.Helper()
	t.Cleanup(func() {
		testkit.CleanupExec(t, "ALTER SYSTEM RESET "+name)
		testkit.CleanupExec(t, "SELECT pg_reload_conf()")
		waitNewSessionSetting(t, name, defaultValue)
	})
	su := testkit.Connect(t, testkit.Superuser)
	testkit.MustExec(t, su, fmt.Sprintf("ALTER SYSTEM SET %s = %s", name, testkit.Lit(value)))
	testkit.MustExec(t, su, "SELECT pg_reload_conf()")
	waitNewSessionSetting(t, name, value)
}

// waitNewSessionSetting waits until a new session (forked by the
// postmaster, as workers are) shows want for the setting name.
func waitNewSessionSetting(t *testing.T, name, want string) {
	t.Helper()
	ok, last := testkit.Poll(t, testkit.WaitTimeout, func() (bool, string) {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := testkit.Cluster.Connect(c, testkit.DBName, testkit.Superuser)
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
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "stmt_conf")
	setSystemAtEnd(t, "statement_timeout", "1500ms", "0")
	conn := testkit.Connect(t, role)
	each := testkit.Submit(t, conn, "SELECT pg_sleep(1); SELECT pg_sleep(1)")
	over := testkit.Submit(t, conn, "SELECT pg_sleep(3)")
	testkit.RequireSucceeded(t, conn, each)
	testkit.RequireFailedLike(t, conn, over, "57014", msgStatementTimeout)
	bob := testkit.Connect(t, "bob")
	testkit.RequireSucceeded(t, bob, testkit.Submit(t, bob, "SELECT pg_sleep(0.2)"))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
}

// TestSetLocalTimeouts: SET LOCAL statement_timeout / lock_timeout inside
// BEGIN ... COMMIT stop the task (57014 / 55P03); the role's next task
// runs without them.
func TestSetLocalTimeouts(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "set_local")
	conn := testkit.Connect(t, role)
	marker := testkit.MarkerTable(t, su, "set_local", role)
	id := testkit.Submit(t, conn, "BEGIN; SET LOCAL statement_timeout = '200ms'; SELECT pg_sleep(2); COMMIT")
	testkit.RequireFailedLike(t, conn, id, "57014", msgStatementTimeout)
	requireQuickFailure(t, id)

	holder := testkit.Connect(t, testkit.Superuser)
	tx := testkit.BeginHeld(t, holder)
	testkit.MustExec(t, holder, fmt.Sprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", marker))
	id = testkit.Submit(t, conn, fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = '200ms'; INSERT INTO %s VALUES (1); COMMIT", marker))
	testkit.RequireFailedLike(t, conn, id, "55P03", msgLockTimeout)
	tx.End(t, "COMMIT")
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, fmt.Sprintf("SELECT pg_sleep(0.5); INSERT INTO %s VALUES (2)", marker)))
	require.Equal(t, []int{2}, testkit.MarkerValues(t, marker))
}
