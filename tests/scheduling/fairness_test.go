package scheduling

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Fairness (control/plan.go PlanRound): databases holding the fewest slots
// are served first, then the (database, role) keys holding the fewest;
// when no slot is free, a key with work and no process takes a slot from
// the busiest key, whose worker leaves after its current task. So other
// work waits about one task's run time at most, however long a database's
// or a role's queue is, and even if it never empties.

// launchMargin is what a task that takes a freed slot may wait beyond the
// busy task it waits for: the worker's exit, the launch of a new one and
// its connection, each up to about half a second on two loaded cores.
const launchMargin = 2 * time.Second

// TestFairnessAcrossDatabases: database A has a backlog of 40 one-second
// tasks of alice holding every slot; alice's one task in database B starts
// within about one task's run time, not after A's backlog (~10 s).
func TestFairnessAcrossDatabases(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	dbA, suA := testkit.NewServedDatabase(t, su, "fair_a")
	dbB, suB := testkit.NewServedDatabase(t, su, "fair_b")
	tbl := testkit.StartTable(t, suB, "alice")
	t.Cleanup(func() { stopDatabaseTasks(t, dbA) })

	// The same role in both databases: only the database tells them apart.
	a := testkit.ConnectTo(t, testkit.Cluster, dbA, "alice")
	const backlog = 40
	first, last := testkit.SubmitMany(t, a, "SELECT pg_sleep(1)", backlog)
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("%d of A's tasks running in %d workers connected to A", testkit.Cluster.MaxWorkers(), testkit.Cluster.MaxWorkers()),
		testkit.WhileConnected(suA, func() (bool, string) {
			running, workers, err := runningAndWorkers(suA, first, last)
			return err == nil && running == testkit.Cluster.MaxWorkers() && workers == testkit.Cluster.MaxWorkers(),
				fmt.Sprintf("%d running, %d workers in A, err=%v", running, workers, err)
		}))

	b := testkit.ConnectTo(t, testkit.Cluster, dbB, "alice")
	delay := testkit.SubmitTimed(t, b, tbl).StartDelay(t, b, testkit.WaitTimeout)
	pending := testkit.QueryOne[int](t, suA, "SELECT count(*)::int FROM lantern.tasks WHERE jobid BETWEEN $1 AND $2 AND status = 'pending'", first, last)
	t.Logf("B's task started %v after its submit; %d of A's %d tasks still pending", delay.Round(time.Millisecond), pending, backlog)
	// One of A's tasks (1 s) and a launch; in submit order (FIFO) B would
	// wait for A's backlog: 10 s, with 20 or more still pending.
	require.Less(t, delay, time.Second+launchMargin, "B's one task behind A's backlog of %d one-second tasks (max_workers %d)", backlog, testkit.Cluster.MaxWorkers())
	require.Greater(t, pending, backlog/2, "A's backlog must still be long (else B only waited for it to drain)")
}

// runningAndWorkers counts the running tasks among jobids first..last of
// the connection's database and the workers connected to that database.
func runningAndWorkers(conn *pgx.Conn, first, last int64) (running, workers int, err error) {
	err = conn.QueryRow(context.Background(), `
		SELECT (SELECT count(*)::int FROM lantern.tasks WHERE jobid BETWEEN $1 AND $2 AND status = 'running'),
		       (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = $3 AND datname = current_database())`,
		first, last, testkit.BackendWorker).Scan(&running, &workers)
	return running, workers, err
}

// stopDatabaseTasks cancels every task of database db and waits until none
// is pending or running (from a t.Cleanup, before the database is dropped).
func stopDatabaseTasks(t *testing.T, db string) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := testkit.Cluster.Connect(c, db, testkit.Superuser)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(c, "SELECT lantern.cancel_all_async_tasks()"); err != nil {
		t.Errorf("cleanup: cancel_all_async_tasks in %s: %v", db, err)
		return
	}
	testkit.RequirePoll(t, testkit.WaitTimeout, "no task left pending or running in "+db, testkit.WhileConnected(conn, func() (bool, string) {
		n, err := testkit.QueryRows[int64](conn, "SELECT jobid FROM lantern.tasks WHERE status IN ('pending', 'running')")
		return err == nil && len(n) == 0, fmt.Sprintf("unfinished %v, err=%v", n, err)
	}))
}

// TestRefillingQueueAcrossRoles: role R runs 100 chains of 0.3 s tasks,
// each of which submits the next one of its chain before it ends, so R
// keeps a backlog of about 96 pending tasks that never shrinks, and holds
// every slot; role S's one task still starts within about one of R's
// task run times (earlier versions made it wait about 3 minutes), ahead
// of R's tasks submitted before it. In submit order (FIFO) it would wait
// for that backlog: about 7 s, and it would overtake none of them.
func TestRefillingQueueAcrossRoles(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	r := testkit.NewCreatorRole(t, su, "refill")
	testkit.DropRolesAtEnd(t, r)
	s := testkit.NewTempRole(t, su, "refillother")
	tbl := testkit.StartTable(t, su, s)

	rc := testkit.Connect(t, r)
	stopTbl, fn, startLog := testkit.Ident(t, testkit.Uniq("refill_stop")), testkit.Ident(t, testkit.Uniq("refill")), testkit.Ident(t, testkit.Uniq("refill_log"))
	// Each task logs when it started, and its jobid (its application_name).
	testkit.MustExec(t, rc, fmt.Sprintf(`
		CREATE TABLE %[1]s (stop bool NOT NULL);
		INSERT INTO %[1]s VALUES (false);
		CREATE TABLE %[3]s (jobid bigint, at timestamptz);
		CREATE FUNCTION %[2]s() RETURNS void LANGUAGE plpgsql AS $f$
		BEGIN
			INSERT INTO %[3]s VALUES (split_part(current_setting('application_name'), ' ', 3)::bigint, clock_timestamp());
			PERFORM pg_sleep(0.3);
			IF NOT (SELECT stop FROM %[1]s) THEN
				PERFORM lantern.async_task('SELECT %[2]s()');
			END IF;
		END $f$`, stopTbl, fn, startLog))
	chains := stopChainsAtEnd(t, r, stopTbl)

	const nChains = 100
	testkit.SubmitMany(t, rc, fmt.Sprintf("SELECT %s()", fn), nChains)
	// Steady state: every chain has gone round a few times, and R's
	// workers run a task in every slot.
	n := testkit.Cluster.MaxWorkers()
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("R's chains refilled %d times, %d tasks running in %d workers of R", 3*n, n, n),
		testkit.WhileConnected(su, func() (bool, string) {
			var succeeded, running, workers int
			err := su.QueryRow(context.Background(), `
				SELECT (SELECT count(*)::int FROM lantern.tasks WHERE username = $1 AND status = 'succeeded'),
				       (SELECT count(*)::int FROM lantern.tasks WHERE username = $1 AND status = 'running'),
				       (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = $2 AND usename = $1)`,
				r, testkit.BackendWorker).Scan(&succeeded, &running, &workers)
			return err == nil && succeeded >= 3*n && running == n && workers == n,
				fmt.Sprintf("%d succeeded, %d running, %d workers of R, err=%v", succeeded, running, workers, err)
		}))
	before := testkit.StatusCounts(t, su, r)

	sc := testkit.Connect(t, s)
	st := testkit.SubmitTimed(t, sc, tbl)
	delay := st.StartDelay(t, sc, testkit.WaitTimeout)
	after := testkit.StatusCounts(t, su, r)
	// R's tasks submitted before S's that had not started when S's did.
	overtaken := testkit.QueryOne[int](t, su, fmt.Sprintf(`
		SELECT count(*)::int FROM lantern.tasks t
		WHERE t.username = $1 AND t.jobid < $2
		  AND NOT EXISTS (SELECT FROM %s l WHERE l.jobid = t.jobid AND l.at <= (SELECT max(at) FROM %s))`, startLog, tbl),
		r, st.ID)
	t.Logf("S's task started %v after its submit, ahead of %d of R's tasks submitted before it; R's tasks succeeded: %d before S's submit, %d after S's task; now %d running, %d pending",
		delay.Round(time.Millisecond), overtaken, before["succeeded"], after["succeeded"], after["running"], after["pending"])
	// One of R's tasks (0.3 s) and a launch.
	require.Less(t, delay, 300*time.Millisecond+launchMargin, "S's one task while R's %d refilling chains hold every slot", nChains)
	require.Greater(t, overtaken, nChains/2, "S's task went ahead of R's backlog (in submit order it would have waited for it)")
	// A task's successor commits with the task's success: each chain has
	// exactly one unfinished task at any time.
	require.Equal(t, nChains, after["running"]+after["pending"], "R's chains still going after S's task")

	chains.stop(t)
}

// refillChains are a role's self-refilling chains of tasks, stopped by a
// flag in a table of that role.
type refillChains struct {
	role, stopTbl string
	stopped       bool
}

// stopChainsAtEnd makes sure the chains are stopped when the test ends,
// even if it failed half-way.
func stopChainsAtEnd(t *testing.T, role, stopTbl string) *refillChains {
	t.Helper()
	ch := &refillChains{role: role, stopTbl: stopTbl}
	t.Cleanup(func() {
		if !ch.stopped {
			ch.stop(t)
		}
	})
	return ch
}

// stop sets the flag, waits until no task of the role is pending or
// running, and cancels whatever is left as the role, to be safe. It uses
// contexts of its own, so that a t.Cleanup can call it.
func (ch *refillChains) stop(t *testing.T) {
	t.Helper()
	ch.stopped = true
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, testkit.Cluster.Exec(c, testkit.DBName, fmt.Sprintf("UPDATE %s SET stop = true", ch.stopTbl)))
	// The backlog need not run out: the tasks running now add no successor
	// once they see the flag.
	require.NoError(t, testkit.Cluster.ExecAs(c, testkit.DBName, ch.role, "SELECT lantern.cancel_all_async_tasks()"))
	conn, err := testkit.Cluster.Connect(c, testkit.DBName, testkit.Superuser)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	testkit.RequirePoll(t, testkit.WaitTimeout, "no task of "+ch.role+" pending or running", testkit.WhileConnected(conn, func() (bool, string) {
		n, err := testkit.QueryRows[int64](conn,
			"SELECT jobid FROM lantern.tasks WHERE username = $1 AND status IN ('pending', 'running')", ch.role)
		return err == nil && len(n) == 0, fmt.Sprintf("unfinished %v, err=%v", n, err)
	}))
	require.NoError(t, testkit.Cluster.ExecAs(c, testkit.DBName, ch.role, "SELECT lantern.cancel_all_async_tasks()"))
}
