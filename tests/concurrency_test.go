package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// statusesOf returns the statuses of ids (in the order of ids) from one
// snapshot.
func statusesOf(conn *pgx.Conn, ids []int64) ([]string, error) {
	rows, err := conn.Query(context.Background(), `
		SELECT coalesce(t.status, '<NULL>')
		FROM unnest($1::bigint[]) WITH ORDINALITY AS u(jobid, n)
		LEFT JOIN lantern.tasks t USING (jobid)
		ORDER BY u.n`, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func count(statuses []string, s string) int {
	n := 0
	for _, x := range statuses {
		if x == s {
			n++
		}
	}
	return n
}

func TestFourTasksRunConcurrently(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	require.Equal(t, 4, cluster.MaxWorkers())

	roles := []string{"alice", "bob", "carol", superuser}
	var ids []int64
	for _, r := range roles {
		ids = append(ids, submit(t, connect(t, r), "SELECT pg_sleep(3)"))
	}
	requirePoll(t, waitTimeout, "4 tasks of 4 roles running at the same time", func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		st, err := statusesOf(su, ids)
		if err != nil {
			return false, err.Error()
		}
		workers, err := countBackends(su, backendWorker)
		if err != nil {
			return false, err.Error()
		}
		return count(st, "running") == 4 && workers >= 4,
			fmt.Sprintf("statuses %v, %d worker processes", st, workers)
	})
	for _, id := range ids {
		requireSucceeded(t, su, id)
	}
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
	requirePoll(t, 2*waitTimeout, "all tasks to finish", func() (bool, string) {
		histMu.Lock()
		defer histMu.Unlock()
		if l, msg := lost(su); l {
			return l, msg
		}
		st, err := statusesOf(su, ids)
		if err != nil {
			return false, err.Error()
		}
		workers, err := countBackends(su, backendWorker)
		if err != nil {
			return false, err.Error()
		}
		running := count(st, "running")
		maxRunning = max(maxRunning, running)
		maxWorkers = max(maxWorkers, workers)
		if running == limit && count(st, "pending") == 2 {
			sawFullAndQueued = true
		}
		obs := fmt.Sprintf("%v/%d workers", st, workers)
		if len(history) == 0 || history[len(history)-1] != obs {
			history = append(history, obs)
		}
		return count(st, "succeeded")+count(st, "failed") == len(ids), obs
	})
	require.Equal(t, limit, maxRunning, "running tasks must reach and never exceed lantern_async.max_workers\n%s",
		strings.Join(history, "\n"))
	require.LessOrEqual(t, maxWorkers, limit, "worker processes must never exceed lantern_async.max_workers\n%s",
		strings.Join(history, "\n"))
	require.True(t, sawFullAndQueued, "expected %d running and 2 pending at some point\n%s", limit,
		strings.Join(history, "\n"))
	for _, id := range ids {
		requireSucceeded(t, alice, id)
	}
}

// TestDispatchOrderFIFO: a task never leaves 'pending' while a task with a
// smaller jobid (committed earlier) is still pending.
func TestDispatchOrderFIFO(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	bob := connect(t, "bob")
	var ids []int64
	for range 8 {
		ids = append(ids, submit(t, bob, "SELECT pg_sleep(0.5)"))
	}
	var violations []string
	requirePoll(t, waitTimeout, "all tasks to finish", func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		st, err := statusesOf(su, ids)
		if err != nil {
			return false, err.Error()
		}
		for i := range st {
			for j := i + 1; j < len(st); j++ {
				if st[i] == "pending" && st[j] != "pending" {
					violations = append(violations, fmt.Sprintf("job %d pending while later job %d is %s (%v)",
						ids[i], ids[j], st[j], st))
				}
			}
		}
		return count(st, "succeeded")+count(st, "failed") == len(ids), fmt.Sprint(st)
	})
	require.Empty(t, violations)
	for _, id := range ids {
		requireSucceeded(t, bob, id)
	}
}

// TestTasksStartInJobidOrder occupies all workers but one with tasks blocked
// on an advisory lock, so that the 8 tasks under test go through a single
// worker one after the other; the order in which they take numbers from a
// sequence is then exactly their start order.
func TestTasksStartInJobidOrder(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	lockConn := connect(t, superuser)
	alice := connect(t, "alice")
	key := 7_000_000 + nameCounter.Add(1)

	// Released explicitly below, or by closing lockConn if the test fails.
	mustExec(t, lockConn, "SELECT pg_advisory_lock($1)", key)

	var blockers []int64
	for range cluster.MaxWorkers() - 1 {
		blockers = append(blockers, submit(t, su, fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", key)))
	}
	waitBlocked(t, su, blockers, key)

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
	for _, id := range ids {
		requireSucceeded(t, alice, id)
	}
	rows, err := alice.Query(ctx(t), fmt.Sprintf("SELECT i FROM %s ORDER BY pos", tbl))
	require.NoError(t, err)
	order, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8}, order, "start order of the tasks (by jobid)")

	mustExec(t, lockConn, "SELECT pg_advisory_unlock($1)", key)
	for _, id := range blockers {
		requireSucceeded(t, su, id)
	}
}

// waitBlocked waits until the blocker tasks are 'running' and each is
// waiting for the advisory lock key.
func waitBlocked(t *testing.T, su *pgx.Conn, blockers []int64, key int64) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("%d blocker tasks running and waiting on the advisory lock", len(blockers)),
		func() (bool, string) {
			if l, msg := lost(su); l {
				return l, msg
			}
			st, err := statusesOf(su, blockers)
			if err != nil {
				return false, err.Error()
			}
			var waiting int
			if err := su.QueryRow(context.Background(), `
				SELECT count(*) FROM pg_locks
				WHERE locktype = 'advisory' AND NOT granted
				  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`,
				key).Scan(&waiting); err != nil {
				return false, err.Error()
			}
			return count(st, "running") == len(blockers) && waiting == len(blockers),
				fmt.Sprintf("statuses %v, %d waiting on the lock", st, waiting)
		})
}
