package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// A cancel committed by COMMIT PREPARED is a commit no transaction callback
// of ours sees; the utility hook wakes the database's waiters after it, so
// the waiter returns at once instead of at its 10 s recheck. The waiter
// falls asleep (one look, status pending) just before the COMMIT PREPARED,
// so its recheck is some 10 s away: 5 s is the bound.
func TestWaitTaskIsWokenByCommitPrepared(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	t.Cleanup(func() {
		cleanupExec(t, "ALTER SYSTEM RESET max_prepared_transactions")
		require.NoError(t, cluster.Restart(pgcluster.Fast))
		serverReady(t, waitTimeout)
	})
	mustExec(t, su, "ALTER SYSTEM SET max_prepared_transactions = 5")
	restartServer(t)
	su = connect(t, superuser)

	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	pending := submit(t, su, "SELECT 1")
	gid := uniq("waitgid")
	rollbackPreparedAtEnd(t, gid)
	canceler := connect(t, superuser)
	mustExec(t, canceler, "BEGIN")
	require.True(t, queryOne[bool](t, canceler, "SELECT lantern.cancel_task($1)", pending))
	mustExec(t, canceler, fmt.Sprintf("PREPARE TRANSACTION '%s'", gid))

	done := startWaiter(t, su, pending, "1 min")
	mustExec(t, su, fmt.Sprintf("COMMIT PREPARED '%s'", gid))
	committed := time.Now()
	r := waitResultOf(t, done)
	t.Logf("the waiter got %q %v after COMMIT PREPARED", r.status, r.at.Sub(committed).Round(time.Millisecond))
	require.Equal(t, "canceled", r.status)
	require.Less(t, r.at.Sub(committed), 5*time.Second, "woken after COMMIT PREPARED, not by the 10 s recheck")

	lock.release(t)
	requireSucceeded(t, su, blockers...)
}
