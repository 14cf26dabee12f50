package scheduling

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// A worker that runs out of tasks waits a moment (one second) for more of
// its role before it exits, and the launcher wakes it when they come:
// a role that submits one task at a time keeps one process instead of
// making the server fork one per task, and an idle worker gives its slot up
// when another role's task needs it.

// TestTaskStreamKeepsOneWorker: one role submits a trivial task, waits for
// it, and submits the next, for 3 s: a handful of worker starts at most.
func TestTaskStreamKeepsOneWorker(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.DebugServerLog(t, su)
	role := testkit.NewTempRole(t, su, "stream")
	conn := testkit.Connect(t, role)

	from := len(testkit.Cluster.Log())
	start := time.Now()
	n := 0
	for time.Since(start) < 3*time.Second {
		testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, "SELECT 1"))
		n++
	}
	starts := testkit.WorkerStartsSince(from)
	t.Logf("%d tasks one at a time, %d worker processes started", n, starts)
	require.Greater(t, n, 20, "tasks run one after another")
	require.LessOrEqual(t, starts, 3, "worker starts for one role's stream of one-at-a-time submits")
}

// TestIdleWorkerGivesWayToOtherRole: every slot is busy (blockers, and an
// idle worker of a role that has nothing left); another role's task starts
// well before that idle worker's timeout (testkit.SlowIdleTimeout here), because
// it is asked to leave.
func TestIdleWorkerGivesWayToOtherRole(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, testkit.SlowIdleTimeout)
	// From a quiet server: a scout in the last slot when the idle role
	// submits would have a blocker retired for it (scouts are never
	// retired), and that blocker, still retiring, would then be the slot
	// promised to the other role (control.retirements): it would wait for
	// the blocker's task, not for the idle worker to leave.
	testkit.WaitNoneConnected(t, su)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)
	idleRole, otherRole := testkit.NewTempRole(t, su, "idle"), testkit.NewTempRole(t, su, "other")
	marker := testkit.Ident(t, testkit.Uniq("gives_way"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s (started timestamptz); GRANT INSERT ON %[1]s TO %s", marker, otherRole))

	idle := testkit.Connect(t, idleRole)
	testkit.RequireSucceeded(t, idle, testkit.Submit(t, idle, "SELECT 1"))
	// Once its worker waits idle in the last slot, submit. (A worker seen
	// busy, still recording the outcome, would have a blocker retired for
	// the other role instead, which leaves only after its task: by
	// design, see control.retirements.)
	testkit.WaitIdleWorker(t, su, idleRole)
	other := testkit.Connect(t, otherRole)
	id := testkit.Submit(t, other, fmt.Sprintf("INSERT INTO %s VALUES (clock_timestamp())", marker))
	testkit.RequireSucceeded(t, other, id)
	delay := testkit.QueryOne[float64](t, su, fmt.Sprintf(
		"SELECT extract(epoch FROM m.started - t.started_at)::float8 FROM %s m, lantern.tasks t WHERE t.jobid = $1", marker), id)
	t.Logf("the other role's task started %.0f ms after its submit", delay*1000)
	require.Less(t, delay, testkit.HandoffBound.Seconds(), "the idle worker (%v timeout) must give its slot up at once", testkit.SlowIdleTimeout)

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}

// TestFinishedWorkerGivesWayToWaitingRole: one commit queues a task for
// each of max_workers + 1 roles. max_workers workers start, one per role,
// and the last role waits: a worker gives its slot up only once it has
// finished a task, so the launcher must learn when one has. It does when
// the worker runs out of tasks (the worker wakes it), so the last role's
// task starts about one launch after the first ones finish, not once an
// idle worker's timeout ran out (nothing else would wake the launcher:
// without that wake-up, the task started 8.5-8.9 s after the commit with
// an 8 s idle timeout, and about 1 s with the default, as in
// TestNoLostWakeups).
func TestFinishedWorkerGivesWayToWaitingRole(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.SetWorkerIdleTimeout(t, su, testkit.SlowIdleTimeout)
	var roles []string
	for range testkit.Cluster.MaxWorkers() + 1 {
		roles = append(roles, testkit.NewTempRole(t, su, "handoff"))
	}
	tbl := testkit.Ident(t, testkit.Uniq("handoff"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s (at timestamptz, usr name DEFAULT current_user)", tbl))
	testkit.MustExec(t, su, fmt.Sprintf("GRANT INSERT ON %s TO %s", tbl, strings.Join(roles, ", ")))
	testkit.WaitNoneConnected(t, su)

	tx := testkit.BeginHeld(t, su)
	for _, r := range roles {
		testkit.MustExec(t, tx.Conn, "SET LOCAL ROLE "+r)
		testkit.MustExec(t, tx.Conn, "SELECT lantern.async_task($1)", fmt.Sprintf("INSERT INTO %s(at) VALUES (clock_timestamp())", tbl))
	}
	testkit.MustExec(t, tx.Conn, "RESET ROLE")
	committed := testkit.QueryOne[time.Time](t, tx.Conn, "SELECT clock_timestamp()")
	tx.End(t, "COMMIT")

	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("a task of each of the %d roles to run", len(roles)), testkit.RowsLeft(su, int64(len(roles)), tbl))
	starts := testkit.QueryAll[float64](t, su, fmt.Sprintf(
		"SELECT extract(epoch FROM at - $1::timestamptz)::float8 FROM %s ORDER BY at", tbl), committed)
	t.Logf("started after the commit (s): %.3f", starts)
	last := starts[len(starts)-1]
	require.Less(t, last, testkit.HandoffBound.Seconds(),
		"the last role's task waited for an idle worker's timeout (%v) instead of the first finished task", testkit.SlowIdleTimeout)
}
