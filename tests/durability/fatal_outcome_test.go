package durability

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
)

// setLogMinMessages sets log_min_messages (ALTER SYSTEM, reload) until the
// test ends, and waits until a new session sees it: processes forked from
// now on have it.
func setLogMinMessages(t *testing.T, su *pgx.Conn, level string) {
	t.Helper()
	t.Cleanup(func() {
		testkit.CleanupExec(t, "ALTER SYSTEM RESET log_min_messages")
		testkit.CleanupExec(t, "SELECT pg_reload_conf()")
	})
	testkit.MustExec(t, su, fmt.Sprintf("ALTER SYSTEM SET log_min_messages = %s", level))
	testkit.MustExec(t, su, "SELECT pg_reload_conf()")
	testkit.RequirePoll(t, 10*time.Second, "log_min_messages = "+level+" in a new session", func() (bool, string) {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := testkit.Cluster.Connect(c, testkit.DBName, testkit.Superuser)
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close(context.Background())
		var got string
		if err := conn.QueryRow(c, "SHOW log_min_messages").Scan(&got); err != nil {
			return false, err.Error()
		}
		return got == level, got
	})
}

// TestFatalOutcomeWhateverIsLogged: a task's FATAL error is its outcome
// even when log_min_messages = panic keeps it out of the server log.
// Before, the error was caught in emit_log_hook, which errfinish() calls
// only for a message that goes to the log: the task ended "the process
// running this task exited" (57P01) instead. Now an error context
// callback catches it (errstart() always lets FATAL through). On 15 a task
// cannot raise a FATAL error of its own (transaction_timeout is new in
// 17, and the workers keep exit_on_error off), so the test runs on 17+.
func TestFatalOutcomeWhateverIsLogged(t *testing.T) {
	testkit.Begin(t)
	if testkit.ServerVersionNum(t) < 170000 {
		t.Skip("no task can raise a FATAL error of its own before PostgreSQL 17 (transaction_timeout)")
	}
	su := testkit.Connect(t, testkit.Superuser)
	setLogMinMessages(t, su, "panic")
	role := testkit.NewTempRole(t, su, "fatal_unlogged")
	conn := testkit.Connect(t, role)
	testkit.RequireTransactionTimeout(t, conn, testkit.Submit(t, conn, "SET transaction_timeout = '200ms'; SELECT pg_sleep(30)"))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
}
