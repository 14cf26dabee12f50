package scheduling

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

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
	testkit.Begin(t)
	for _, v := range []struct {
		name   string
		locked int
	}{{"claimable queue", 0}, {"queue behind locked rows", 4}} {
		t.Run(v.name, func(t *testing.T) {
			testkit.Begin(t)
			fairSlots(t, v.locked)
		})
	}
}

func fairSlots(t *testing.T, locked int) {
	su := testkit.Connect(t, testkit.Superuser)
	hog, victim := testkit.NewTempRole(t, su, "fairhog"), testkit.NewTempRole(t, su, "fairvictim")
	hc := testkit.Connect(t, hog)
	if locked > 0 {
		// Every slot busy, so that no worker claims them before they are locked.
		lock := testkit.HoldAdvisoryLock(t)
		blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
		first, _ := testkit.SubmitMany(t, hc, "SELECT 1 /* locked */", locked)
		holder := testkit.Connect(t, hog)
		testkit.BeginHeld(t, holder)
		for id := first; id < first+int64(locked); id++ {
			require.True(t, testkit.QueryOne[bool](t, holder, "SELECT lantern.cancel_task($1)", id))
		}
		lock.Release(t)
		testkit.RequireSucceeded(t, su, blockers...)
	}
	// 4 workers × 0.2 s: 75 s of work, far more than the test waits.
	testkit.SubmitMany(t, hc, "SELECT pg_sleep(0.2)", 1500)
	waitRoleWorkers(t, su, hog, testkit.Cluster.MaxWorkers())

	vc := testkit.Connect(t, victim)
	start := time.Now()
	id := testkit.Submit(t, vc, "SELECT 1")
	testkit.RequirePoll(t, 5*time.Second, "the other role's task to succeed", testkit.WhileConnected(su, func() (bool, string) {
		st, err := testkit.StatusesOf(su, []int64{id})
		return err == nil && len(st) == 1 && st[0] == "succeeded", fmt.Sprintf("%v %v", st, err)
	}))
	pending := testkit.StatusCounts(t, su, hog)["pending"]
	t.Logf("other role's task succeeded after %v; %d tasks of the hog still pending",
		time.Since(start).Round(time.Millisecond), pending)
	require.Greater(t, pending, 100, "the hog's queue must still be long (else the task only waited for it to drain)")
}

// waitRoleWorkers waits until n worker processes of role exist.
func waitRoleWorkers(t *testing.T, su *pgx.Conn, role string, n int) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("%d workers of %s", n, role), testkit.WhileConnected(su, func() (bool, string) {
		got, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1 AND usename = $2", testkit.BackendWorker, role)
		return err == nil && len(got) == n, fmt.Sprintf("%d workers of %s, err=%v", len(got), role, err)
	}))
}
