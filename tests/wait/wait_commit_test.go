package wait

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// lantern.wait_task() commits the transaction it is CALLed in (README
// "Wait"): in a DO block or a procedure, that transaction may hold the
// caller's own work. Before, it committed only when the task was still
// running (a finished one returned at once), so an INSERT before the CALL
// survived a later RAISE in one order and not in the other. Now what it
// does never depends on the task: it refuses, whatever the task's state,
// when the commit would change the caller's transaction (writes, SET LOCAL,
// an open cursor, a subtransaction), and otherwise always commits first.

// waitCommitCase is a DO block around CALL lantern.wait_task(): before and
// after are PL/pgSQL statements (%[1]s is the marker table, %[2]s the
// variable s that receives the status), call replaces the plain CALL.
type waitCommitCase struct {
	name, before, after, call string
	refused                   bool  // 25001 from wait_task, or the block runs on
	committed                 []int // the marker's rows committed before the CALL
}

// waitCommitOutcome is what a DO block did: its error and the marker's rows.
type waitCommitOutcome struct {
	Code, Message string
	HasHint       bool
	Marker        []int
}

func runWaitCommitCase(t *testing.T, c waitCommitCase, jobid int64) waitCommitOutcome {
	t.Helper()
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "wait_commit")
	call := c.call
	if call == "" {
		call = "CALL lantern.wait_task(%[3]d, '200 ms', %[2]s);"
	}
	body := fmt.Sprintf(c.before+"\n"+call+"\n"+c.after, marker, "s", jobid)
	_, err := su.Exec(testkit.Ctx(t), "DO $do$ DECLARE s text; c refcursor; x int; r record; BEGIN\n"+body+"\nEND $do$")
	out := waitCommitOutcome{Marker: testkit.MarkerValues(t, marker)}
	if err != nil {
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "a server error: %v", err)
		out.Code, out.Message, out.HasHint = pgErr.Code, pgErr.Message, pgErr.Hint != ""
	}
	return out
}

var waitCommitCases = []waitCommitCase{
	{name: "an INSERT before", refused: true,
		before: "INSERT INTO %[1]s VALUES (1);",
		after:  "RAISE EXCEPTION 'went on';"},
	{name: "an UPDATE before", refused: true, committed: []int{1},
		before: "INSERT INTO %[1]s VALUES (1); COMMIT; UPDATE %[1]s SET a = 2;",
		after:  "RAISE EXCEPTION 'went on';"},
	{name: "SET LOCAL before", refused: true,
		before: "SET LOCAL work_mem = '7MB';",
		after:  "RAISE EXCEPTION 'went on with work_mem %%', current_setting('work_mem');"},
	{name: "set_config(..., true) before", refused: true,
		before: "PERFORM set_config('work_mem', '7MB', true);",
		after:  "RAISE EXCEPTION 'went on with work_mem %%', current_setting('work_mem');"},
	{name: "SET TRANSACTION READ ONLY before", refused: true,
		before: "SET TRANSACTION READ ONLY;",
		after:  "RAISE EXCEPTION 'went on, read only: %%', current_setting('transaction_read_only');"},
	{name: "an open cursor", refused: true,
		before: "OPEN c FOR SELECT 1;",
		after:  "FETCH c INTO x; RAISE EXCEPTION 'went on, fetched %%', x;"},
	{name: "inside an exception block", refused: true,
		call:  "BEGIN CALL lantern.wait_task(%[3]d, '200 ms', %[2]s); EXCEPTION WHEN division_by_zero THEN NULL; END;",
		after: "RAISE EXCEPTION 'went on';"},

	{name: "only reads before",
		before: "PERFORM count(*) FROM lantern.tasks;",
		after:  "RAISE EXCEPTION 'went on, status known: %%', %[2]s IS NOT NULL;"},
	{name: "a COMMIT after the INSERT",
		before: "INSERT INTO %[1]s VALUES (1); COMMIT;",
		after:  "RAISE EXCEPTION 'went on';"},
	{name: "a session SET before",
		before: "SET work_mem = '7MB';",
		after:  "RAISE EXCEPTION 'went on with work_mem %%', current_setting('work_mem');"},
	{name: "in a FOR loop over a query",
		call:  "FOR r IN SELECT g FROM generate_series(1, 2) g LOOP CALL lantern.wait_task(%[3]d, '200 ms', %[2]s); END LOOP;",
		after: "RAISE EXCEPTION 'went on, status known: %%', %[2]s IS NOT NULL;"},
	// Nothing was written, so the commit at the start only ends the lock:
	// it does so whatever the task's state.
	{name: "a transaction-level advisory lock before",
		before: "PERFORM pg_advisory_xact_lock(4242);",
		after: "RAISE EXCEPTION 'went on holding %% advisory locks', " +
			"(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid());"},
}

// The same DO block gives the same result for a task that has finished and
// for one still running; where the CALL would have to commit the caller's
// own work, it is refused (25001, with a hint) and that work is rolled back.
func TestWaitTaskCommitsNothingOfItsCaller(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	finished := testkit.Submit(t, su, "SELECT 1")
	testkit.RequireSucceeded(t, su, finished)
	lock := testkit.HoldAdvisoryLock(t)
	running := testkit.Submit(t, su, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{running})

	for _, c := range waitCommitCases {
		t.Run(c.name, func(t *testing.T) {
			afterFinished := runWaitCommitCase(t, c, finished)
			afterRunning := runWaitCommitCase(t, c, running)
			t.Logf("task finished: %+v; task running: %+v", afterFinished, afterRunning)
			require.Equal(t, afterFinished, afterRunning, "the same whether the task had finished or not")
			if c.refused {
				require.Equal(t, "25001", afterFinished.Code, "refused: %s", afterFinished.Message)
				require.True(t, strings.HasPrefix(afterFinished.Message, "lantern.wait_task() cannot run "), afterFinished.Message)
				require.True(t, afterFinished.HasHint, "a hint says what to do")
				require.Equal(t, append([]int{}, c.committed...), afterFinished.Marker, "the caller's writes are rolled back, never committed")
				return
			}
			require.Equal(t, "P0001", afterFinished.Code, "the block went on after the CALL: %s", afterFinished.Message)
			require.True(t, strings.HasPrefix(afterFinished.Message, "went on"), afterFinished.Message)
		})
	}
	lock.Release(t)
	testkit.RequireSucceeded(t, su, running)
}

// What the allowed blocks saw after the CALL: the commit at its start ends
// a transaction-level lock and keeps a session SET and a committed INSERT.
func TestWaitTaskCommitsAtItsStart(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	finished := testkit.Submit(t, su, "SELECT 1")
	testkit.RequireSucceeded(t, su, finished)
	byName := map[string]waitCommitCase{}
	for _, c := range waitCommitCases {
		byName[c.name] = c
	}
	require.Equal(t, "went on holding 0 advisory locks",
		runWaitCommitCase(t, byName["a transaction-level advisory lock before"], finished).Message)
	require.Equal(t, "went on with work_mem 7MB", runWaitCommitCase(t, byName["a session SET before"], finished).Message)
	require.Equal(t, []int{1}, runWaitCommitCase(t, byName["a COMMIT after the INSERT"], finished).Marker)
}
