package security

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRoleGoneWhileItsWorkerRuns: a role dropped (or, on 15, stripped of
// LOGIN) while one of its tasks runs and two more are queued behind it for
// the same worker (every other slot is busy): the queued ones end failed
// (42704 / 28000) and never run in the worker still logged in as the old
// role (README, "What is trusted, and why"). From 17 a worker needs no
// LOGIN (BGWORKER_BYPASS_ROLELOGINCHECK): the NOLOGIN role's queued tasks
// run, as it.
func TestRoleGoneWhileItsWorkerRuns(t *testing.T) {
	testkit.Begin(t)
	for _, c := range []struct {
		name, how, sqlstate string
		runs                bool // the queued tasks still run (as the role)
	}{
		{"dropped", "DROP ROLE %s", "42704", false},
		{"nologin", "ALTER ROLE %s NOLOGIN", "28000", !testkit.WorkerNeedsLogin(t)},
	} {
		t.Run(c.name, func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			role := testkit.NewTempRole(t, su, "role_gone") // the test drops it; the cleanup copes
			marker := testkit.MarkerTable(t, su, "role_gone")
			testkit.MustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO PUBLIC", marker))
			lock := testkit.HoldAdvisoryLock(t)
			blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)
			gate := testkit.HoldAdvisoryLock(t) // the role's first task waits on it

			conn := testkit.Connect(t, role)
			tx := testkit.BeginHeld(t, conn)
			running := testkit.Submit(t, conn, fmt.Sprintf("%s; INSERT INTO %s VALUES (1)", gate.WaitSQL(), marker))
			queued := []int64{
				testkit.Submit(t, conn, testkit.RanAsSQL(role)+"; "+testkit.MarkerInsert(marker, 2)),
				testkit.Submit(t, conn, testkit.RanAsSQL(role)+"; "+testkit.MarkerInsert(marker, 3)),
			}
			tx.End(t, "COMMIT")
			require.NoError(t, conn.Close(testkit.Ctx(t)))
			gate.WaitBlocked(t, su, []int64{running})
			// DROP ROLE needs the role's client sessions gone.
			testkit.RequirePoll(t, testkit.WaitTimeout, "the role's client sessions to end", testkit.WhileConnected(su, func() (bool, string) {
				pids, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'", role)
				return err == nil && len(pids) == 0, fmt.Sprintf("client backends %v, err=%v", pids, err)
			}))

			testkit.MustExec(t, su, fmt.Sprintf(c.how, role))
			gate.Release(t)
			status, msg := testkit.WaitTask(t, su, running)
			t.Logf("the task that ran during %q: %s %q", c.how, status, testkit.FirstLine(msg))
			if c.runs {
				require.Equal(t, "succeeded", status, "the running task of a role made NOLOGIN (17+)")
				testkit.RequireSucceeded(t, su, queued...)
				require.Equal(t, []int{1, 2, 3}, testkit.MarkerValues(t, marker), "every task of the NOLOGIN role ran (17+)")
			} else {
				for _, id := range queued {
					msg := testkit.RequireFailedWithSQLState(t, su, id, c.sqlstate)
					t.Logf("queued task %d: %q", id, testkit.FirstLine(msg))
				}
				vals := testkit.MarkerValues(t, marker)
				assert.NotContains(t, vals, 2, "a queued task of the role ran after: "+c.how)
				assert.NotContains(t, vals, 3, "a queued task of the role ran after: "+c.how)
			}

			lock.Release(t)
			testkit.RequireSucceeded(t, su, blockers...)
			bob := testkit.Connect(t, "bob")
			testkit.RequireSucceeded(t, bob, testkit.Submit(t, bob, "SELECT 1"))
		})
	}
}
