package scheduling

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

func TestFourTasksRunConcurrently(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	require.Equal(t, 4, testkit.Cluster.MaxWorkers())

	roles := []string{"alice", "bob", "carol", testkit.Superuser}
	var ids []int64
	for _, r := range roles {
		ids = append(ids, testkit.Submit(t, testkit.Connect(t, r), "SELECT pg_sleep(3)"))
	}
	testkit.RequirePoll(t, testkit.WaitTimeout, "4 tasks of 4 roles running at the same time", testkit.WhileConnected(su, func() (bool, string) {
		st, workers, err := testkit.StatusesAndWorkers(su, ids)
		if err != nil {
			return false, err.Error()
		}
		return testkit.CountStatus(st, "running") == 4 && workers >= 4,
			fmt.Sprintf("statuses %v, %d worker processes", st, workers)
	}))
	testkit.RequireSucceeded(t, su, ids...)
}

func TestMaxWorkersRespected(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	limit := testkit.Cluster.MaxWorkers()

	var ids []int64
	for range limit + 2 {
		ids = append(ids, testkit.Submit(t, alice, "SELECT pg_sleep(2)"))
	}
	var (
		maxRunning, maxWorkers int
		sawFullAndQueued       bool
		history                []string
	)
	var histMu sync.Mutex
	t.Cleanup(func() {
		if t.Failed() {
			histMu.Lock()
			defer histMu.Unlock()
			t.Logf("observations (statuses of %v / worker processes):\n%s", ids, strings.Join(history, "\n"))
		}
	})
	testkit.RequirePoll(t, 2*testkit.WaitTimeout, "all tasks to finish", testkit.WhileConnected(su, func() (bool, string) {
		histMu.Lock()
		defer histMu.Unlock()
		st, workers, err := testkit.StatusesAndWorkers(su, ids)
		if err != nil {
			return false, err.Error()
		}
		running := testkit.CountStatus(st, "running")
		maxRunning = max(maxRunning, running)
		maxWorkers = max(maxWorkers, workers)
		if running == limit && testkit.CountStatus(st, "pending") == 2 {
			sawFullAndQueued = true
		}
		obs := fmt.Sprintf("%v/%d workers", st, workers)
		if len(history) == 0 || history[len(history)-1] != obs {
			history = append(history, obs)
		}
		return testkit.AllFinal(st), obs
	}))
	require.Equal(t, limit, maxRunning, "running tasks must reach and never exceed lantern_async.max_workers\n%s",
		strings.Join(history, "\n"))
	require.LessOrEqual(t, maxWorkers, limit, "worker processes must never exceed lantern_async.max_workers\n%s",
		strings.Join(history, "\n"))
	require.True(t, sawFullAndQueued, "expected %d running and 2 pending at some point\n%s", limit,
		strings.Join(history, "\n"))
	testkit.RequireSucceeded(t, alice, ids...)
}

// TestDispatchOrderFIFO: a task never stays 'pending' while a task with a
// larger jobid (committed later) has been running for a while.
//
// Not "never pending while a later one runs": workers claim with SKIP
// LOCKED, so while one worker's claim of job 5 is uncommitted another skips
// it and takes job 6, and its commit can land first. Job 5 was still claimed
// first and turns 'running' when that claim commits, milliseconds later; a
// task passed over for real waits for a worker to come free, a whole task
// (2 s here) later. The grace is half a task, far above a claim's commit
// even on a loaded machine (up to ~150 ms measured on two busy cores).
func TestDispatchOrderFIFO(t *testing.T) {
	const claimCommitGrace = time.Second
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	bob := testkit.Connect(t, "bob")
	var ids []int64
	for range 8 {
		ids = append(ids, testkit.Submit(t, bob, "SELECT pg_sleep(2)"))
	}
	leftPending := make([]time.Time, len(ids)) // when each was first seen not pending
	violations := map[[2]int]string{}          // the first sighting of each passed-over pair
	testkit.RequirePoll(t, testkit.WaitTimeout, "all tasks to finish", testkit.WhileConnected(su, func() (bool, string) {
		st, err := testkit.StatusesOf(su, ids)
		if err != nil {
			return false, err.Error()
		}
		now := time.Now()
		for j := range st {
			if st[j] != "pending" && leftPending[j].IsZero() {
				leftPending[j] = now
			}
		}
		for i := range st {
			for j := i + 1; j < len(st); j++ {
				passedOver := st[i] == "pending" && !leftPending[j].IsZero() &&
					now.Sub(leftPending[j]) >= claimCommitGrace
				if _, seen := violations[[2]int{i, j}]; passedOver && !seen {
					violations[[2]int{i, j}] = fmt.Sprintf("job %d pending while later job %d left pending %s ago (%v)",
						ids[i], ids[j], now.Sub(leftPending[j]).Round(time.Millisecond), st)
				}
			}
		}
		return testkit.AllFinal(st), fmt.Sprint(st)
	}))
	require.Empty(t, violations)
	testkit.RequireSucceeded(t, bob, ids...)
}

// TestTasksStartInJobidOrder occupies all workers but one with tasks blocked
// on an advisory lock, so that the 8 tasks under test go through a single
// worker one after the other; the order in which they take numbers from a
// sequence is then exactly their start order.
func TestTasksStartInJobidOrder(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)

	tbl := testkit.Ident(t, testkit.Uniq("ord"))
	testkit.MustExec(t, alice, fmt.Sprintf("CREATE TABLE %s(pos bigserial, i int)", tbl))
	var ids []int64
	for i := 1; i <= 8; i++ {
		id := testkit.Submit(t, alice, fmt.Sprintf("INSERT INTO %s(i) VALUES (%d)", tbl, i))
		if len(ids) > 0 {
			require.Greater(t, id, ids[len(ids)-1], "jobids increase with submission order")
		}
		ids = append(ids, id)
	}
	testkit.RequireSucceeded(t, alice, ids...)
	order := testkit.QueryAll[int](t, alice, fmt.Sprintf("SELECT i FROM %s ORDER BY pos", tbl))
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8}, order, "start order of the tasks (by jobid)")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}
