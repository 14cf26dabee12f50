package durability

import (
	"context"
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A task is 'succeeded' exactly when its work committed,
// across many fast and immediate restarts under load.
//
// Each cycle queues a burst of short single-transaction tasks
// (pg_sleep(0.02), then an INSERT of the task's own marker value) and
// restarts the server while they run. In addition, one "pinned" task per
// cycle is held in the window between the end of its query and the
// recording of its outcome: the test locks its lantern.tasks row (FOR
// UPDATE, as the superuser) once it is running, so that whatever writes the
// outcome has to wait, and restarts while it waits. Whether its INSERT
// committed or not, its status must agree.

const (
	outcomeBurst = 150
	// outcomeRunning is how many tasks of a burst must be final before the
	// restart, so that it lands while the burst is being worked through.
	outcomeRunning = 20
)

var outcomeRestartModes = []pgcluster.StopMode{
	pgcluster.Fast, pgcluster.Immediate, pgcluster.Fast, pgcluster.Immediate, pgcluster.Fast, pgcluster.Immediate,
}

// outcomeTask is a task under test and the marker value its INSERT writes.
type outcomeTask struct {
	id    int64
	value int
}

// submitBurst queues n tasks in one transaction, with marker values first,
// first+1, ...
func submitBurst(t *testing.T, su *pgx.Conn, marker string, first, n int) []outcomeTask {
	t.Helper()
	rows, err := su.Query(testkit.Ctx(t), fmt.Sprintf(`
		SELECT lantern.async_task(format('SELECT pg_sleep(0.02); INSERT INTO %s VALUES (%%s)', i)), i
		FROM generate_series($1::int, $2::int) AS i ORDER BY i`, marker), first, first+n-1)
	require.NoError(t, err)
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outcomeTask, error) {
		var ot outcomeTask
		return ot, r.Scan(&ot.id, &ot.value)
	})
	require.NoError(t, err)
	require.Len(t, ts, n)
	return ts
}

// pinOutcome submits a task through conn, waits until it runs, locks its
// row in a transaction left open on a superuser connection of its own, and
// waits until its worker is blocked by that lock (the task's query is over
// by then, or about to commit). Should the worker hold the row itself
// while the task runs, the lock is granted only once the task is final and
// the pin has no effect (logged).
func pinOutcome(t *testing.T, su, conn *pgx.Conn, marker string, value int) outcomeTask {
	t.Helper()
	q := fmt.Sprintf("SELECT pg_sleep(0.3); INSERT INTO %s VALUES (%d) /* %s */", marker, value, testkit.Uniq("pinned"))
	rt := testkit.StartTask(t, su, conn, q)
	holder := testkit.Connect(t, testkit.Superuser)
	testkit.BeginHeld(t, holder)
	testkit.MustExec(t, holder, "SELECT 1 FROM lantern.tasks WHERE jobid = $1 FOR UPDATE", rt.ID)
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("the worker of pinned task %d to wait for its row", rt.ID), testkit.WhileConnected(su, func() (bool, string) {
		var st, wt *string
		if err := su.QueryRow(context.Background(), `
			SELECT t.status, a.wait_event_type FROM lantern.tasks t
			LEFT JOIN pg_stat_activity a ON a.pid = $2 WHERE t.jobid = $1`, rt.ID, rt.Pid).Scan(&st, &wt); err != nil {
			return false, err.Error()
		}
		if testkit.IsFinal(testkit.Deref(st)) {
			t.Logf("pinned task %d was already %s when its row lock was granted", rt.ID, testkit.Deref(st))
		}
		return testkit.IsFinal(testkit.Deref(st)) || testkit.Deref(wt) == "Lock", fmt.Sprintf("status %q, worker wait_event_type %q", testkit.Deref(st), testkit.Deref(wt))
	}))
	return outcomeTask{id: rt.ID, value: value}
}

// waitBurstFlowing waits until at least outcomeRunning tasks of ts are final.
func waitBurstFlowing(t *testing.T, conn *pgx.Conn, ts []outcomeTask) {
	t.Helper()
	ids := make([]int64, len(ts))
	for i, ot := range ts {
		ids[i] = ot.id
	}
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("%d tasks of the burst to finish", outcomeRunning), testkit.WhileConnected(conn, func() (bool, string) {
		st, err := testkit.StatusesOf(conn, ids)
		if err != nil {
			return false, err.Error()
		}
		n := testkit.CountStatus(st, "succeeded") + testkit.CountStatus(st, "failed")
		return n >= outcomeRunning, fmt.Sprintf("%d final", n)
	}))
}

// requireOutcomesExact waits until every task is final, then asserts
// succeeded ⇔ its marker row exists (exactly once) and failed ⇒ absent.
// It returns how many failed.
func requireOutcomesExact(t *testing.T, su *pgx.Conn, marker string, ts []outcomeTask) (failed int) {
	t.Helper()
	ids := make([]int64, len(ts))
	for i, ot := range ts {
		ids[i] = ot.id
	}
	testkit.WaitAllFinal(t, su, ids)
	st, err := testkit.StatusesOf(su, ids)
	require.NoError(t, err)
	present := map[int]int{}
	for _, v := range testkit.MarkerValues(t, marker) {
		present[v]++
	}
	var succeeded int
	for i, ot := range ts {
		switch st[i] {
		case "succeeded":
			succeeded++
			assert.Equal(t, 1, present[ot.value], "task %d succeeded: its INSERT (%d) must be committed, once", ot.id, ot.value)
		case "failed":
			failed++
			assert.Zero(t, present[ot.value], "task %d failed (%q), but its INSERT (%d) committed",
				ot.id, testkit.Deref(testkit.GetTask(t, su, ot.id).ErrorMessage), ot.value)
		default:
			t.Errorf("task %d ended %q: want succeeded or failed", ot.id, st[i])
		}
	}
	t.Logf("%d tasks: %d succeeded, %d failed", len(ts), succeeded, failed)
	return failed
}

// TestOutcomeExactAcrossRestarts: bursts of tasks and one pinned task per
// cycle, restarted fast or immediate in each cycle; at the end every
// task's status agrees with whether its work committed. That holds
// vacuously if every restart came between tasks: at least one must have
// found tasks running (seen just before it) and interrupted one (57P01,
// failed, its work rolled back).
func TestOutcomeExactAcrossRestarts(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "outcome_pin")
	marker := testkit.MarkerTable(t, su, "outcome", role)

	var all []outcomeTask
	midTask := 0 // restarts that found a task running
	for cycle, mode := range outcomeRestartModes {
		pinned := pinOutcome(t, su, testkit.Connect(t, role), marker, 1_000_000+cycle)
		burst := submitBurst(t, su, marker, cycle*outcomeBurst, outcomeBurst)
		all = append(append(all, pinned), burst...)
		waitBurstFlowing(t, su, burst)

		if testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE status = 'running' AND (jobid = $1 OR jobid BETWEEN $2 AND $3)",
			pinned.id, burst[0].id, burst[len(burst)-1].id) > 0 {
			midTask++
		}
		require.NoError(t, testkit.Cluster.Restart(mode), "restart -m %s (cycle %d)", mode, cycle)
		testkit.RequireHealthy(t)
		su = testkit.Connect(t, testkit.Superuser)
	}
	failed := requireOutcomesExact(t, su, marker, all)
	ids := make([]int64, len(all))
	for i, ot := range all {
		ids[i] = ot.id
	}
	interrupted := testkit.QueryOne[int](t, su, `SELECT count(*)::int FROM lantern.tasks t JOIN lantern.task_errors e USING (jobid)
		WHERE t.jobid = ANY($1) AND t.status = 'failed' AND e.sqlstate = '57P01'`, ids)
	t.Logf("%d of %d restarts found tasks running; %d tasks interrupted (57P01)", midTask, len(outcomeRestartModes), interrupted)
	require.Positive(t, midTask, "no restart landed while a task was running: the exactness above held vacuously")
	require.Positive(t, failed, "no task failed: no restart interrupted one")
	require.Positive(t, interrupted, "no task ended failed because a restart stopped it (57P01)")

	testkit.RequireSucceeded(t, su, testkit.Submit(t, su, testkit.MarkerInsert(marker, -1)))
}
