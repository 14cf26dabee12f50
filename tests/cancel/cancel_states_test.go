package cancel

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// cancel_task() / cancel_all_async_tasks() in unusual transaction states,
// raced against each other, and while a task's COMMIT runs its deferred
// triggers (README, "Cancel").

// TestCancelTransactionStates: in odd transaction states and with odd
// arguments, the cancel functions give the documented answer (an error
// only where PostgreSQL itself refuses), never crash the server, and the
// tasks a statement submitted and canceled never run.
func TestCancelTransactionStates(t *testing.T) {
	testkit.Begin(t)
	logFrom := len(testkit.Cluster.Log()) // crash tests kill processes on purpose
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_states")
	conn := testkit.Connect(t, role)
	done := testkit.Submit(t, conn, "SELECT 1")
	testkit.RequireSucceeded(t, conn, done)
	d := fmt.Sprint(done)
	for _, c := range []struct{ query, code string }{
		{"SELECT lantern.cancel_task(NULL)", ""},
		{"SELECT lantern.cancel_task(-9223372036854775808), lantern.cancel_task(0), lantern.cancel_task(9223372036854775807)", ""},
		{"SELECT lantern.cancel_task(g) FROM generate_series(-1000, 0) g", ""},
		{"BEGIN READ ONLY; SELECT lantern.cancel_task(" + d + "); COMMIT", ""},
		{"BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT lantern.cancel_task(" + d + "); SELECT lantern.cancel_all_async_tasks(); COMMIT", ""},
		{"BEGIN; SAVEPOINT a; SELECT lantern.cancel_all_async_tasks(); ROLLBACK TO a; SELECT lantern.cancel_task(" + d + "); COMMIT", ""},
		{"SELECT lantern.cancel_task(lantern.async_task('SELECT 1'))", ""},
		{"SELECT lantern.cancel_task(j) FROM (SELECT lantern.async_task('SELECT 1') j FROM generate_series(1, 50)) s", ""},
		{"DO $$ BEGIN FOR i IN 1..200 LOOP PERFORM lantern.cancel_task(lantern.async_task('SELECT 1')); END LOOP; END $$", ""},
		{"DO $$ BEGIN PERFORM lantern.cancel_task(1/0); EXCEPTION WHEN others THEN PERFORM lantern.cancel_all_async_tasks(); END $$", ""},
		{"BEGIN READ ONLY; SELECT lantern.cancel_task(lantern.async_task('SELECT 1')); COMMIT", "25006"},
	} {
		_, err := conn.Exec(testkit.Ctx(t), c.query)
		require.Equal(t, c.code, testkit.PgCode(err), "%s: %v", c.query, err)
		_, _ = conn.Exec(testkit.Ctx(t), "ROLLBACK")
	}
	// In a failed transaction:
	_, err := conn.Exec(testkit.Ctx(t), "BEGIN; SELECT 1/0")
	require.Equal(t, "22012", testkit.PgCode(err))
	_, err = conn.Exec(testkit.Ctx(t), "SELECT lantern.cancel_task($1)", done)
	require.Equal(t, "25P02", testkit.PgCode(err))
	testkit.MustExec(t, conn, "ROLLBACK")

	counts := testkit.StatusCounts(t, su, role)
	require.Equal(t, map[string]int{"succeeded": 1, "canceled": 251}, counts, "the tasks submitted and canceled in one statement never ran")
	require.Equal(t, 251, testkit.CanceledShape(t, su, role))
	require.Empty(t, testkit.CrashMarkers(testkit.Cluster.Log()[logFrom:]))
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
}

// TestConcurrentCancelsSameTask: several sessions cancel the same task at
// once (at staggered moments, delayed in the server), racing with
// cancel_all_async_tasks() and an administrator's pg_cancel_backend(). If
// any cancel_task() returned true the task ends canceled; if all returned
// false and no cancel_all ran, it does not; succeeded ⇔ its row exists.
func TestConcurrentCancelsSameTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_conc")
	conn := testkit.Connect(t, role)
	marker := testkit.MarkerTable(t, su, "cancel_conc", role)
	const sessions = 4
	conns := make([]*pgx.Conn, sessions)
	for i := range conns {
		conns[i] = testkit.Connect(t, role)
	}
	admin := testkit.Connect(t, testkit.Superuser)
	outcomes := map[string]int{}
	for iter := 0; iter < 40; iter++ {
		id := testkit.Submit(t, conn, fmt.Sprintf("SELECT pg_sleep(0.0%d); INSERT INTO %s VALUES (%d)", iter%10, marker, iter))
		withCancelAll := iter%2 == 0
		results := make([]*bool, sessions)
		errs := make([]error, sessions)
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				delay := float64((iter+3*i)%15) / 100 // 0 to 140 ms
				if i == 0 && withCancelAll {
					_, errs[i] = conns[i].Exec(context.Background(), "SELECT lantern.cancel_all_async_tasks() FROM pg_sleep($1)", delay)
					return
				}
				errs[i] = conns[i].QueryRow(context.Background(), "SELECT lantern.cancel_task($1) FROM pg_sleep($2)", id, delay).Scan(&results[i])
			}(i)
		}
		if iter%3 == 0 {
			testkit.MustExec(t, admin, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = $1 AND usename = $2", testkit.BackendWorker, role)
		}
		wg.Wait()
		sawTrue := false
		for i := range results {
			require.NoError(t, errs[i], "iteration %d, session %d", iter, i)
			sawTrue = sawTrue || testkit.Deref(results[i])
		}
		status, msg := testkit.WaitTask(t, conn, id)
		n := testkit.QueryOne[int](t, su, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE a = $1", marker), iter)
		if sawTrue {
			require.Equal(t, "canceled", status, "iteration %d: a cancel_task returned true but task %d ended %s (%s)", iter, id, status, msg)
		} else if !withCancelAll {
			require.NotEqual(t, "canceled", status, "iteration %d: every cancel_task returned false but task %d ended canceled", iter, id)
		}
		require.Equal(t, status == "succeeded", n == 1, "iteration %d: task %d %s, %d rows", iter, id, status, n)
		outcomes[fmt.Sprintf("%s (a cancel_task true: %v)", status, sawTrue)]++
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestCancelWhileDeferredTriggerRuns: a task's deferred constraint trigger
// runs at its COMMIT, and is the task's own code: a cancel_task() while it
// runs is accepted, stops it, and the task ends canceled with nothing
// committed.
func TestCancelWhileDeferredTriggerRuns(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "deferred_cancel")
	testkit.MustExec(t, su, fmt.Sprintf("GRANT CREATE ON SCHEMA public TO %s", role))
	conn := testkit.Connect(t, role)
	tbl := testkit.Ident(t, testkit.Uniq("deferred_cancel_t"))
	testkit.MustExec(t, conn, fmt.Sprintf(`
		CREATE TABLE %[1]s(a int);
		CREATE FUNCTION %[1]s_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON %[1]s DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW EXECUTE FUNCTION %[1]s_slow();`, tbl))
	id := testkit.Submit(t, conn, fmt.Sprintf("INSERT INTO %s VALUES (1)", tbl))
	testkit.RequirePoll(t, testkit.WaitTimeout, "the task's deferred trigger to sleep", testkit.WhileConnected(su, func() (bool, string) {
		pids, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1 AND usename = $2 AND wait_event = 'PgSleep'", testkit.BackendWorker, role)
		return err == nil && len(pids) == 1, fmt.Sprintf("sleeping workers %v, err=%v", pids, err)
	}))
	start := time.Now()
	testkit.RequireCancelTask(t, conn, id, true)
	r := testkit.RequireCanceled(t, conn, id, "57014")
	took := time.Since(start)
	t.Logf("task %d ended canceled %v after cancel_task(), duration %.3f s", id, took.Round(time.Millisecond), testkit.Deref(r.Duration))
	require.Less(t, took, 3*time.Second, "the cancel stops the trigger's pg_sleep(5)")
	require.Equal(t, 0, testkit.QueryOne[int](t, conn, fmt.Sprintf("SELECT count(*)::int FROM %s", tbl)), "a canceled task commits nothing")
}
