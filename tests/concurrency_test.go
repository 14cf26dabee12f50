package tests

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFourTasksRunConcurrently(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	require.Equal(t, 4, cluster.MaxWorkers())

	roles := []string{"alice", "bob", "carol", superuser}
	var ids []int64
	for _, r := range roles {
		ids = append(ids, submit(t, connect(t, r), "SELECT pg_sleep(3)"))
	}
	requirePoll(t, waitTimeout, "4 tasks of 4 roles running at the same time", whileConnected(su, func() (bool, string) {
		st, workers, err := statusesAndWorkers(su, ids)
		if err != nil {
			return false, err.Error()
		}
		return countStatus(st, "running") == 4 && workers >= 4,
			fmt.Sprintf("statuses %v, %d worker processes", st, workers)
	}))
	requireSucceeded(t, su, ids...)
}

func TestMaxWorkersRespected(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	limit := cluster.MaxWorkers()

	var ids []int64
	for range limit + 2 {
		ids = append(ids, submit(t, alice, "SELECT pg_sleep(2)"))
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
	requirePoll(t, 2*waitTimeout, "all tasks to finish", whileConnected(su, func() (bool, string) {
		histMu.Lock()
		defer histMu.Unlock()
		st, workers, err := statusesAndWorkers(su, ids)
		if err != nil {
			return false, err.Error()
		}
		running := countStatus(st, "running")
		maxRunning = max(maxRunning, running)
		maxWorkers = max(maxWorkers, workers)
		if running == limit && countStatus(st, "pending") == 2 {
			sawFullAndQueued = true
		}
		obs := fmt.Sprintf("%v/%d workers", st, workers)
		if len(history) == 0 || history[len(history)-1] != obs {
			history = append(history, obs)
		}
		return allFinal(st), obs
	}))
	require.Equal(t, limit, maxRunning, "running tasks must reach and never exceed lantern_async.max_workers\n%s",
		strings.Join(history, "\n"))
	require.LessOrEqual(t, maxWorkers, limit, "worker processes must never exceed lantern_async.max_workers\n%s",
		strings.Join(history, "\n"))
	require.True(t, sawFullAndQueued, "expected %d running and 2 pending at some point\n%s", limit,
		strings.Join(history, "\n"))
	requireSucceeded(t, alice, ids...)
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
	begin(t)
	su := connect(t, superuser)
	bob := connect(t, "bob")
	var ids []int64
	for range 8 {
		ids = append(ids, submit(t, bob, "SELECT pg_sleep(2)"))
	}
	leftPending := make([]time.Time, len(ids)) // when each was first seen not pending
	violations := map[[2]int]string{}          // the first sighting of each passed-over pair
	requirePoll(t, waitTimeout, "all tasks to finish", whileConnected(su, func() (bool, string) {
		st, err := statusesOf(su, ids)
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
		return allFinal(st), fmt.Sprint(st)
	}))
	require.Empty(t, violations)
	requireSucceeded(t, bob, ids...)
}

// TestTasksStartInJobidOrder occupies all workers but one with tasks blocked
// on an advisory lock, so that the 8 tasks under test go through a single
// worker one after the other; the order in which they take numbers from a
// sequence is then exactly their start order.
func TestTasksStartInJobidOrder(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers()-1)

	tbl := ident(t, uniq("ord"))
	mustExec(t, alice, fmt.Sprintf("CREATE TABLE %s(pos bigserial, i int)", tbl))
	var ids []int64
	for i := 1; i <= 8; i++ {
		id := submit(t, alice, fmt.Sprintf("INSERT INTO %s(i) VALUES (%d)", tbl, i))
		if len(ids) > 0 {
			require.Greater(t, id, ids[len(ids)-1], "jobids increase with submission order")
		}
		ids = append(ids, id)
	}
	requireSucceeded(t, alice, ids...)
	order := queryAll[int](t, alice, fmt.Sprintf("SELECT i FROM %s ORDER BY pos", tbl))
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8}, order, "start order of the tasks (by jobid)")

	lock.release(t)
	requireSucceeded(t, su, blockers...)
}
