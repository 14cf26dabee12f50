package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Fair slots (README "What is trusted, and why"): when all slots are
// taken, a role with tasks and no worker takes a slot from the role
// holding the most, after that worker's current task, so no role keeps
// every slot, even with a queue that never empties.

// TestLongQueueDoesNotKeepEverySlot: an ordinary role queues far more
// short tasks than its workers can run in the test's time and holds every
// slot; another role's one task must still run within a few seconds,
// while the first role's queue is still full. A variant keeps the head of
// that queue locked by an open cancel_task() transaction (rows "simply
// skipped until it ends").
func TestLongQueueDoesNotKeepEverySlot(t *testing.T) {
	begin(t)
	for _, v := range []struct {
		name   string
		locked int
	}{{"claimable queue", 0}, {"queue behind locked rows", 4}} {
		t.Run(v.name, func(t *testing.T) {
			begin(t)
			fairSlots(t, v.locked)
		})
	}
}

func fairSlots(t *testing.T, locked int) {
	su := connect(t, superuser)
	hog, victim := newTempRole(t, su, "fairhog"), newTempRole(t, su, "fairvictim")
	hc := connect(t, hog)
	if locked > 0 {
		// Every slot busy, so that no worker claims them before they are locked.
		lock := holdAdvisoryLock(t)
		blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
		first, _ := submitMany(t, hc, "SELECT 1 /* locked */", locked)
		holder := connect(t, hog)
		beginHeld(t, holder)
		for id := first; id < first+int64(locked); id++ {
			require.True(t, queryOne[bool](t, holder, "SELECT lantern.cancel_task($1)", id))
		}
		lock.release(t)
		requireSucceeded(t, su, blockers...)
	}
	// 4 workers × 0.2 s: 75 s of work, far more than the test waits.
	submitMany(t, hc, "SELECT pg_sleep(0.2)", 1500)
	waitRoleWorkers(t, su, hog, cluster.MaxWorkers())

	vc := connect(t, victim)
	start := time.Now()
	id := submit(t, vc, "SELECT 1")
	requirePoll(t, 5*time.Second, "the other role's task to succeed", whileConnected(su, func() (bool, string) {
		st, err := statusesOf(su, []int64{id})
		return err == nil && len(st) == 1 && st[0] == "succeeded", fmt.Sprintf("%v %v", st, err)
	}))
	pending := statusCounts(t, su, hog)["pending"]
	t.Logf("other role's task succeeded after %v; %d tasks of the hog still pending",
		time.Since(start).Round(time.Millisecond), pending)
	require.Greater(t, pending, 100, "the hog's queue must still be long (else the task only waited for it to drain)")
}

// waitRoleWorkers waits until n worker processes of role exist.
func waitRoleWorkers(t *testing.T, su *pgx.Conn, role string, n int) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("%d workers of %s", n, role), whileConnected(su, func() (bool, string) {
		got, err := queryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1 AND usename = $2", backendWorker, role)
		return err == nil && len(got) == n, fmt.Sprintf("%d workers of %s, err=%v", len(got), role, err)
	}))
}
