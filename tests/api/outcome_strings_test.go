package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// The success written in the task's own last transaction (cgo/helpers/la_exec_finish.c,
// README "Crashes and restarts"). Whatever the task string does to that
// transaction, 'succeeded' must mean its work committed, exactly once, and
// nothing may be left 'running'.

type outcomeCase struct {
	name  string
	query string // %[1]s: the marker table; %[2]s: a role granted to the task's role; %[3]s: fk child table
	want  string // final status; "" (with rows -1): only succeeded ⇔ committed is checked
	rows  int    // rows the marker must hold afterwards
	// midCommit: the string commits part of its work before its end (as
	// psql -c, documented): no succeeded ⇔ rows check.
	midCommit bool
}

// fillCase fills in the case's placeholders, if it has any.
func fillCase(q string, args ...any) string {
	if !strings.Contains(q, "%[") {
		return q
	}
	return fmt.Sprintf(q, args...)
}

var outcomeCases = []outcomeCase{
	{"set local role", "BEGIN; SET LOCAL ROLE %[2]s; INSERT INTO %[1]s VALUES (1); COMMIT", "succeeded", 1, false},
	{"set local role implicit", "SET LOCAL ROLE %[2]s; INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"set role no reset", "SET ROLE %[2]s; INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"read only block", "BEGIN READ ONLY; SELECT count(*) FROM %[1]s; COMMIT", "succeeded", 0, false},
	{"read only after write", "INSERT INTO %[1]s VALUES (1); SET TRANSACTION READ ONLY", "succeeded", 1, false},
	{"read only after write block", "BEGIN; INSERT INTO %[1]s VALUES (1); SET LOCAL transaction_read_only = on; COMMIT", "succeeded", 1, false},
	{"default read only", "SET default_transaction_read_only = on; SELECT 1", "succeeded", 0, false},
	{"serializable", "BEGIN ISOLATION LEVEL SERIALIZABLE; INSERT INTO %[1]s VALUES (1); COMMIT", "succeeded", 1, false},
	{"serializable implicit", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"repeatable read deferrable ro", "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE; SELECT 1; COMMIT", "succeeded", 0, false},
	{"deferred fk violated", "BEGIN; SET CONSTRAINTS ALL DEFERRED; INSERT INTO %[3]s VALUES (999); INSERT INTO %[1]s VALUES (1); COMMIT", "failed", 0, false},
	{"deferred fk violated implicit", "SET CONSTRAINTS ALL DEFERRED; INSERT INTO %[3]s VALUES (999); INSERT INTO %[1]s VALUES (1)", "failed", 0, false},
	{"deferred fk ok", "SET CONSTRAINTS ALL DEFERRED; INSERT INTO %[3]s VALUES (1); INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"savepoints open at commit", "BEGIN; SAVEPOINT a; INSERT INTO %[1]s VALUES (1); SAVEPOINT b; INSERT INTO %[1]s VALUES (2); COMMIT", "succeeded", 2, false},
	{"rollback to savepoint", "BEGIN; INSERT INTO %[1]s VALUES (1); SAVEPOINT a; INSERT INTO %[1]s VALUES (2); ROLLBACK TO a; COMMIT", "succeeded", 1, false},
	{"savepoint left open", "BEGIN; SAVEPOINT a; INSERT INTO %[1]s VALUES (1)", "failed", 0, false},
	{"release savepoint last", "BEGIN; SAVEPOINT a; INSERT INTO %[1]s VALUES (1); RELEASE a", "failed", 0, false},
	{"discard all", "DISCARD ALL", "succeeded", 0, false},
	{"reset all then insert", "RESET ALL; INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{name: "discard all after write", query: "BEGIN; INSERT INTO %[1]s VALUES (1); COMMIT; DISCARD ALL", want: "failed", rows: 1, midCommit: true},
	{"commit and chain", "BEGIN; INSERT INTO %[1]s VALUES (1); COMMIT AND CHAIN; COMMIT", "succeeded", 1, false},
	{"rollback and chain", "BEGIN; INSERT INTO %[1]s VALUES (1); ROLLBACK AND CHAIN; INSERT INTO %[1]s VALUES (2); COMMIT", "succeeded", 1, false},
	{"end", "BEGIN; INSERT INTO %[1]s VALUES (1); END", "succeeded", 1, false},
	{"abort at end", "BEGIN; INSERT INTO %[1]s VALUES (1); ABORT", "succeeded", 0, false},
	{"commit outside block", "INSERT INTO %[1]s VALUES (1); COMMIT", "succeeded", 1, false},
	{"lone commit", "COMMIT", "succeeded", 0, false},
	{"submits a task", "SELECT lantern.async_task('SELECT 1'); INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"submits then fails", "SELECT lantern.async_task('INSERT INTO %[1]s VALUES (7)'); SELECT 1/0", "failed", 0, false},
	{"cancel self", "SELECT lantern.cancel_task((SELECT max(jobid) FROM lantern.tasks WHERE status = 'running')); INSERT INTO %[1]s VALUES (1)", "canceled", 0, false},
	{"cancel self block", "BEGIN; INSERT INTO %[1]s VALUES (1); SELECT lantern.cancel_task((SELECT max(jobid) FROM lantern.tasks WHERE status = 'running')); COMMIT", "canceled", 0, false},
	{"cancel self swallowed", `DO $$BEGIN PERFORM lantern.cancel_task((SELECT max(jobid) FROM lantern.tasks WHERE status = 'running')); PERFORM pg_sleep(0.5);
	   EXCEPTION WHEN query_canceled THEN INSERT INTO %[1]s VALUES (1); END$$`, "canceled", 0, false},
	{"cancel_all self", "SELECT lantern.cancel_all_async_tasks(); INSERT INTO %[1]s VALUES (1)", "canceled", 0, false},
	{"temp on commit drop", "BEGIN; CREATE TEMP TABLE tt (a int) ON COMMIT DROP; INSERT INTO %[1]s VALUES (1); COMMIT", "succeeded", 1, false},
	{"notify", "NOTIFY outcomechan, 'x'; INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"statement_timeout local tiny", "BEGIN; SET LOCAL statement_timeout = 1; INSERT INTO %[1]s VALUES (1); COMMIT", "", -1, false},
	{"lock_timeout local tiny", "SET LOCAL lock_timeout = 1; INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"search_path hijack", "CREATE TEMP TABLE tasks (jobid bigint, status text); SET LOCAL search_path = pg_temp, public; INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"row_security off", "SET LOCAL row_security = off; INSERT INTO %[1]s VALUES (1)", "succeeded", 1, false},
	{"session_replication_role", "SET LOCAL session_replication_role = replica; INSERT INTO %[1]s VALUES (1)", "", -1, false},
	{"constraints deferred then commit chain", "BEGIN; SET CONSTRAINTS ALL DEFERRED; INSERT INTO %[3]s VALUES (999); COMMIT AND CHAIN; ROLLBACK", "failed", 0, false},
}

// TestInTransactionOutcomeStrings runs each case as an ordinary role and
// checks status ⇔ the marker rows, no task left running, one outcome.
func TestInTransactionOutcomeStrings(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "outcome")
	granted := testkit.NewTempRole(t, su, "outcomegranted")
	testkit.MustExec(t, su, fmt.Sprintf("GRANT %s TO %s", granted, role))
	testkit.MustExec(t, su, fmt.Sprintf("GRANT USAGE, CREATE ON SCHEMA public TO %s", role))
	conn := testkit.Connect(t, role)
	for _, c := range outcomeCases {
		t.Run(c.name, func(t *testing.T) {
			waitRoleDone(t, su, role)
			marker := testkit.MarkerTable(t, su, "outcome", role, granted)
			parent, child := testkit.Ident(t, testkit.Uniq("outcomeparent")), testkit.Ident(t, testkit.Uniq("outcomechild"))
			testkit.MustExec(t, su, fmt.Sprintf(`CREATE TABLE %[1]s (a int PRIMARY KEY); INSERT INTO %[1]s VALUES (1);
				CREATE TABLE %[2]s (a int REFERENCES %[1]s DEFERRABLE INITIALLY IMMEDIATE);
				GRANT SELECT, INSERT ON %[1]s, %[2]s TO %[3]s`, parent, child, role))
			q := fillCase(c.query, marker, granted, child)
			id := testkit.Submit(t, conn, q)
			status, msg := testkit.WaitTask(t, conn, id)
			rows := len(testkit.MarkerValues(t, marker))
			t.Logf("%s -> %s %q, marker rows %d", q, status, msg, rows)
			if c.rows >= 0 {
				require.Equal(t, c.want, status, "status of %q (%s)", q, msg)
				require.Equal(t, c.rows, rows, "marker rows of %q", q)
			}
			// succeeded ⇔ the marker insert (if any) committed
			if !c.midCommit && strings.Contains(c.query, "INSERT INTO %[1]s VALUES (1)") && !strings.Contains(c.query, "ABORT") &&
				!strings.Contains(c.query, "ROLLBACK AND CHAIN") {
				require.Equal(t, status == "succeeded", rows > 0, "succeeded ⇔ committed for %q (status %s, rows %d)", q, status, rows)
			}
		})
	}
	waitRoleDone(t, su, role)
}

// waitRoleDone waits until role has no task pending or running: tasks some
// cases submit run after them, and nothing may stay 'running'.
func waitRoleDone(t *testing.T, su *pgx.Conn, role string) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, "no task of the role left running or pending", testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int64](su, "SELECT jobid FROM lantern.tasks WHERE username = $1 AND status IN ('pending', 'running')", role)
		return err == nil && len(n) == 0, fmt.Sprintf("unfinished %v, err=%v", n, err)
	}))
}
