package tests

import (
	"fmt"
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
// well before that idle worker's timeout, because it is asked to leave.
func TestIdleWorkerGivesWayToOtherRole(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers()-1)
	idleRole, otherRole := newTempRole(t, su, "idle"), newTempRole(t, su, "other")
	marker := ident(t, uniq("gives_way"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s (started timestamptz); GRANT INSERT ON %[1]s TO %s", marker, otherRole))

	idle := connect(t, idleRole)
	requireSucceeded(t, idle, submit(t, idle, "SELECT 1"))
	// Its worker now waits idle in the last slot: submit at once.
	other := connect(t, otherRole)
	id := submit(t, other, fmt.Sprintf("INSERT INTO %s VALUES (clock_timestamp())", marker))
	requireSucceeded(t, other, id)
	delay := queryOne[float64](t, su, fmt.Sprintf(
		"SELECT extract(epoch FROM m.started - t.started_at)::float8 FROM %s m, lantern.tasks t WHERE t.jobid = $1", marker), id)
	t.Logf("the other role's task started %.0f ms after its submit", delay*1000)
	require.Less(t, delay, 0.7, "the idle worker (1 s timeout) must give its slot up at once")

	lock.release(t)
	requireSucceeded(t, su, blockers...)
}
