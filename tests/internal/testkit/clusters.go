package testkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// StartExtraCluster starts an extra cluster with opts, skipping the test when the
// backend cannot do it; the cluster is closed when the test ends.
func StartExtraCluster(t *testing.T, opts pgcluster.Options) *pgcluster.Cluster {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	opts.Logf = t.Logf
	extra, err := pgcluster.Start(c, opts)
	require.NoError(t, err, "start an extra cluster")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- extra cluster's server log (last %d lines) ---\n%s", LogTailLines, extra.LogTail(LogTailLines))
		}
		t.Logf("the extra cluster's server used %v of CPU", extra.ServerCPU())
		if err := extra.Close(); err != nil {
			t.Errorf("close the extra cluster: %v", err)
		}
	})
	return extra
}

// RollbackPreparedAtEnd rolls back the prepared transaction gid, if it is
// still there, when the test ends.
func RollbackPreparedAtEnd(t *testing.T, gid string) {
	t.Helper()
	t.Cleanup(func() {
		conn, c, done := CleanupConn(t)
		defer done()
		if conn == nil {
			return
		}
		var n int
		if err := conn.QueryRow(c, "SELECT count(*)::int FROM pg_prepared_xacts WHERE gid = $1", gid).Scan(&n); err != nil || n == 0 {
			return
		}
		CleanupExec(t, fmt.Sprintf("ROLLBACK PREPARED '%s'", gid))
	})
}

// RestartServer restarts the server (pg_ctl -m fast) and waits until it is ready.
func RestartServer(t *testing.T) {
	t.Helper()
	require.NoError(t, Cluster.Restart(pgcluster.Fast))
	ok, last := ServerReady(t, WaitTimeout)
	require.True(t, ok, last)
}
