package dependencies

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestDependencyEndsDuringSubmit: the dependency succeeds while the
// submit that names it is still open; the dependent, committed after, runs.
func TestDependencyEndsDuringSubmit(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	lock := testkit.HoldAdvisoryLock(t)
	b := testkit.Submit(t, alice, lock.WaitSQL())
	lock.WaitBlocked(t, su, []int64{b})
	submitter := testkit.Connect(t, "alice")
	tx := testkit.BeginHeld(t, submitter)
	a := submitAfter(t, submitter, "SELECT 1", b)
	lock.Release(t)
	testkit.RequireSucceeded(t, alice, b)
	tx.End(t, "COMMIT")
	testkit.RequireSucceeded(t, alice, a)
}

// TestDependencyEndHeldOpen: the other order. The dependent is committed
// while the transaction that gives its dependency a final status (a
// user's cancel_task()) is still open: the claims find the dependency
// locked and look again later; once that commits, the dependent fails
// naming it. No process of ours waits for the user's lock.
func TestDependencyEndHeldOpen(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	bob := testkit.Connect(t, "bob")
	var b int64
	require.NoError(t, bob.QueryRow(testkit.Ctx(t),
		"SELECT lantern.async_task('SELECT 1', run_after => now() + interval '1 hour')").Scan(&b))
	canceler := testkit.Connect(t, "bob")
	tx := testkit.BeginHeld(t, canceler)
	testkit.RequireCancelTask(t, canceler, b, true)
	a := submitAfter(t, bob, "SELECT 1", b)
	// The claims back off while the cancel holds the row: the task stays queued, never waiting.
	testkit.Never(t, time.Second, func() (bool, string) {
		st := testkit.Deref(testkit.GetTask(t, su, a).Status)
		return st != "pending", "task " + fmt.Sprint(a) + " is " + st
	}, "the dependent decided while its dependency's cancel is uncommitted")
	require.True(t, testkit.QueryOne[bool](t, su, "SELECT due IS NOT NULL FROM lantern.task_owners WHERE jobid = $1", a),
		"the dependent stays in the claims' queue")
	tx.End(t, "COMMIT")
	require.Contains(t, testkit.RequireFailedWithSQLState(t, bob, a, "55000"), dependsOnMessage(b, "was canceled"))
}

// racePairs is how many (dependency, dependent) pairs TestSubmitRacesEnds submits.
const racePairs = 240

// TestSubmitRacesEnds: many dependents submitted while their dependency
// may be starting, running or ending, some in transactions held open for
// a random moment: every one ends, as its dependency did.
func TestSubmitRacesEnds(t *testing.T) {
	testkit.Begin(t)
	const submitters = 4
	type pair struct {
		dep, dependent int64
		failing        bool
	}
	var (
		mu    sync.Mutex
		pairs []pair
		wg    sync.WaitGroup
	)
	for s := range submitters {
		conn := testkit.Connect(t, testkit.TestRoles[s%len(testkit.TestRoles)])
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(s), 19))
			for range racePairs / submitters {
				p := pair{failing: rng.IntN(4) == 0}
				p.dep, p.dependent = racePair(t, conn, rng, p.failing)
				mu.Lock()
				pairs = append(pairs, p)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, pairs, racePairs)
	su := testkit.Connect(t, testkit.Superuser)
	for _, p := range pairs {
		status, msg := testkit.WaitTask(t, su, p.dependent)
		if p.failing {
			require.Equal(t, "failed", status, "task %d after the failing %d", p.dependent, p.dep)
			require.Contains(t, msg, dependsOnMessage(p.dep, "failed"))
		} else {
			require.Equal(t, "succeeded", status, "task %d after %d: %s", p.dependent, p.dep, msg)
		}
	}
}

// racePair submits a dependency that ends at once, and a dependent of it,
// after a random pause, in a transaction held open for another one half
// the time.
func racePair(t *testing.T, conn *pgx.Conn, rng *rand.Rand, failing bool) (dep, dependent int64) {
	query := "SELECT 1"
	if failing {
		query = "SELECT 1/0"
	}
	dep = testkit.Submit(t, conn, query)
	time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
	if rng.IntN(2) == 0 {
		return dep, submitAfter(t, conn, "SELECT 1", dep)
	}
	tx, err := conn.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	dependent = submitAfter(t, tx, "SELECT 1", dep)
	time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
	require.NoError(t, tx.Commit(testkit.Ctx(t)))
	return dep, dependent
}

// TestEndDoesNotWaitForUserLock: a dependent being canceled in a
// transaction left open; its dependency's end, which queues waiting
// dependents again, does not wait for the user: the dependency is
// recorded succeeded while the cancel is open. Committed, the cancel
// wins, and a claim drops the canceled task's entry from the queue;
// rolled back, the dependent runs (before, it was left waiting for good).
func TestEndDoesNotWaitForUserLock(t *testing.T) {
	for _, end := range []string{"COMMIT", "ROLLBACK"} {
		t.Run(end, func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			carol := testkit.Connect(t, "carol")
			lock := testkit.HoldAdvisoryLock(t)
			b := testkit.Submit(t, carol, lock.WaitSQL())
			lock.WaitBlocked(t, su, []int64{b})
			a := submitAfter(t, carol, "SELECT 1", b)
			waitWaiting(t, su, a)
			canceler := testkit.Connect(t, "carol")
			tx := testkit.BeginHeld(t, canceler)
			testkit.RequireCancelTask(t, canceler, a, true)
			lock.Release(t)
			testkit.RequireSucceeded(t, su, b)
			tx.End(t, end)
			if end == "ROLLBACK" {
				testkit.RequireSucceeded(t, carol, a)
				return
			}
			testkit.RequireCanceled(t, carol, a, "57014")
			testkit.RequirePoll(t, testkit.WaitTimeout, "the canceled task out of the queue", func() (bool, string) {
				out := testkit.QueryOne[bool](t, su,
					"SELECT due IS NULL AND NOT depends FROM lantern.task_owners WHERE jobid = $1", a)
				return out, "still queued"
			})
		})
	}
}
