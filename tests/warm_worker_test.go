package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
	begin(t)
	su := connect(t, superuser)
	debugServerLog(t, su)
	role := newTempRole(t, su, "stream")
	conn := connect(t, role)

	from := len(cluster.Log())
	start := time.Now()
	n := 0
	for time.Since(start) < 3*time.Second {
		requireSucceeded(t, conn, submit(t, conn, "SELECT 1"))
		n++
	}
	starts := workerStartsSince(from)
	t.Logf("%d tasks one at a time, %d worker processes started", n, starts)
	require.Greater(t, n, 20, "tasks run one after another")
	require.LessOrEqual(t, starts, 3, "worker starts for one role's stream of one-at-a-time submits")
}

// TestIdleWorkerGivesWayToOtherRole: every slot is busy (blockers, and an
// idle worker of a role that has nothing left); another role's task starts
// well before that idle worker's timeout (slowIdleTimeout here), because
// it is asked to leave.
func TestIdleWorkerGivesWayToOtherRole(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	setWorkerIdleTimeout(t, su, slowIdleTimeout)
	// From a quiet server: a scout in the last slot when the idle role
	// submits would have a blocker retired for it (scouts are never
	// retired), and that blocker, still retiring, would then be the slot
	// promised to the other role (control.retirements): it would wait for
	// the blocker's task, not for the idle worker to leave.
	waitNoneConnected(t, su)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers()-1)
	idleRole, otherRole := newTempRole(t, su, "idle"), newTempRole(t, su, "other")
	marker := ident(t, uniq("gives_way"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s (started timestamptz); GRANT INSERT ON %[1]s TO %s", marker, otherRole))

	idle := connect(t, idleRole)
	requireSucceeded(t, idle, submit(t, idle, "SELECT 1"))
	// Once its worker waits idle in the last slot, submit. (A worker seen
	// busy, still recording the outcome, would have a blocker retired for
	// the other role instead, which leaves only after its task: by
	// design, see control.retirements.)
	waitIdleWorker(t, su, idleRole)
	other := connect(t, otherRole)
	id := submit(t, other, fmt.Sprintf("INSERT INTO %s VALUES (clock_timestamp())", marker))
	requireSucceeded(t, other, id)
	delay := queryOne[float64](t, su, fmt.Sprintf(
		"SELECT extract(epoch FROM m.started - t.started_at)::float8 FROM %s m, lantern.tasks t WHERE t.jobid = $1", marker), id)
	t.Logf("the other role's task started %.0f ms after its submit", delay*1000)
	require.Less(t, delay, handoffBound.Seconds(), "the idle worker (%v timeout) must give its slot up at once", slowIdleTimeout)

	lock.release(t)
	requireSucceeded(t, su, blockers...)
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
	begin(t)
	su := connect(t, superuser)
	setWorkerIdleTimeout(t, su, slowIdleTimeout)
	var roles []string
	for range cluster.MaxWorkers() + 1 {
		roles = append(roles, newTempRole(t, su, "handoff"))
	}
	tbl := ident(t, uniq("handoff"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s (at timestamptz, usr name DEFAULT current_user)", tbl))
	mustExec(t, su, fmt.Sprintf("GRANT INSERT ON %s TO %s", tbl, strings.Join(roles, ", ")))
	waitNoneConnected(t, su)

	tx := beginHeld(t, su)
	for _, r := range roles {
		mustExec(t, tx.conn, "SET LOCAL ROLE "+r)
		mustExec(t, tx.conn, "SELECT lantern.async_task($1)", fmt.Sprintf("INSERT INTO %s(at) VALUES (clock_timestamp())", tbl))
	}
	mustExec(t, tx.conn, "RESET ROLE")
	committed := queryOne[time.Time](t, tx.conn, "SELECT clock_timestamp()")
	tx.end(t, "COMMIT")

	requirePoll(t, waitTimeout, fmt.Sprintf("a task of each of the %d roles to run", len(roles)), rowsLeft(su, int64(len(roles)), tbl))
	starts := queryAll[float64](t, su, fmt.Sprintf(
		"SELECT extract(epoch FROM at - $1::timestamptz)::float8 FROM %s ORDER BY at", tbl), committed)
	t.Logf("started after the commit (s): %.3f", starts)
	last := starts[len(starts)-1]
	require.Less(t, last, handoffBound.Seconds(),
		"the last role's task waited for an idle worker's timeout (%v) instead of the first finished task", slowIdleTimeout)
}
