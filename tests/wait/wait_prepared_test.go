package wait

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// A cancel committed by COMMIT PREPARED is a commit no transaction callback
// of ours sees; the utility hook wakes the database's waiters after it, so
// the waiter returns at once instead of at its 10 s recheck. The waiter
// falls asleep (one look, status pending) just before the COMMIT PREPARED,
// so its recheck is some 10 s away: 5 s is the bound.
func TestWaitTaskIsWokenByCommitPrepared(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	t.Cleanup(func() {
		testkit.CleanupExec(t, "ALTER SYSTEM RESET max_prepared_transactions")
		require.NoError(t, testkit.Cluster.Restart(pgcluster.Fast))
		testkit.ServerReady(t, testkit.WaitTimeout)
	})
	testkit.MustExec(t, su, "ALTER SYSTEM SET max_prepared_transactions = 5")
	testkit.RestartServer(t)
	su = testkit.Connect(t, testkit.Superuser)

	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	pending := testkit.Submit(t, su, "SELECT 1")
	gid := testkit.Uniq("waitgid")
	testkit.RollbackPreparedAtEnd(t, gid)
	canceler := testkit.Connect(t, testkit.Superuser)
	testkit.MustExec(t, canceler, "BEGIN")
	require.True(t, testkit.QueryOne[bool](t, canceler, "SELECT lantern.cancel_task($1)", pending))
	testkit.MustExec(t, canceler, fmt.Sprintf("PREPARE TRANSACTION '%s'", gid))

	done := startWaiter(t, su, pending, "1 min")
	testkit.MustExec(t, su, fmt.Sprintf("COMMIT PREPARED '%s'", gid))
	committed := time.Now()
	r := waitResultOf(t, done)
	t.Logf("the waiter got %q %v after COMMIT PREPARED", r.status, r.at.Sub(committed).Round(time.Millisecond))
	require.Equal(t, "canceled", r.status)
	require.Less(t, r.at.Sub(committed), 5*time.Second, "woken after COMMIT PREPARED, not by the 10 s recheck")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}
