package tests

import (
	"fmt"
	"testing"

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
	begin(t)
	for _, c := range []struct {
		name, how, sqlstate string
		runs                bool // the queued tasks still run (as the role)
	}{
		{"dropped", "DROP ROLE %s", "42704", false},
		{"nologin", "ALTER ROLE %s NOLOGIN", "28000", !workerNeedsLogin(t)},
	} {
		t.Run(c.name, func(t *testing.T) {
			begin(t)
			su := connect(t, superuser)
			role := newTempRole(t, su, "role_gone") // the test drops it; the cleanup copes
			marker := markerTable(t, su, "role_gone")
			mustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO PUBLIC", marker))
			lock := holdAdvisoryLock(t)
			blockers := lock.blockWorkers(t, su, cluster.MaxWorkers()-1)
			gate := holdAdvisoryLock(t) // the role's first task waits on it

			conn := connect(t, role)
			tx := beginHeld(t, conn)
			running := submit(t, conn, fmt.Sprintf("%s; INSERT INTO %s VALUES (1)", gate.waitSQL(), marker))
			queued := []int64{
				submit(t, conn, ranAsSQL(role)+"; "+markerInsert(marker, 2)),
				submit(t, conn, ranAsSQL(role)+"; "+markerInsert(marker, 3)),
			}
			tx.end(t, "COMMIT")
			require.NoError(t, conn.Close(ctx(t)))
			gate.waitBlocked(t, su, []int64{running})
			// DROP ROLE needs the role's client sessions gone.
			requirePoll(t, waitTimeout, "the role's client sessions to end", whileConnected(su, func() (bool, string) {
				pids, err := queryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'", role)
				return err == nil && len(pids) == 0, fmt.Sprintf("client backends %v, err=%v", pids, err)
			}))

			mustExec(t, su, fmt.Sprintf(c.how, role))
			gate.release(t)
			status, msg := waitTask(t, su, running)
			t.Logf("the task that ran during %q: %s %q", c.how, status, firstLine(msg))
			if c.runs {
				require.Equal(t, "succeeded", status, "the running task of a role made NOLOGIN (17+)")
				requireSucceeded(t, su, queued...)
				require.Equal(t, []int{1, 2, 3}, markerValues(t, marker), "every task of the NOLOGIN role ran (17+)")
			} else {
				for _, id := range queued {
					msg := requireFailedWithSQLState(t, su, id, c.sqlstate)
					t.Logf("queued task %d: %q", id, firstLine(msg))
				}
				vals := markerValues(t, marker)
				assert.NotContains(t, vals, 2, "a queued task of the role ran after: "+c.how)
				assert.NotContains(t, vals, 3, "a queued task of the role ran after: "+c.how)
			}

			lock.release(t)
			requireSucceeded(t, su, blockers...)
			bob := connect(t, "bob")
			requireSucceeded(t, bob, submit(t, bob, "SELECT 1"))
		})
	}
}
