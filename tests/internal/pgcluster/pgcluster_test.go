package pgcluster

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLocalLifecycle checks the local backend without the extension:
// initdb, start, connect, stop/restart in both modes, log, close.
func TestLocalLifecycle(t *testing.T) {
	if b := os.Getenv(EnvBackend); b != "" && b != BackendLocal {
		t.Skipf("%s=%s: this test covers the local backend only", EnvBackend, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	c, err := Start(ctx, Options{NoPreload: true, Logf: t.Logf})
	require.NoError(t, err)
	lb := c.s
	dir := lb.dir
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = c.Close()
		}
	})

	got := serverSummary(ctx, t, c)
	version, err := PGConfig("version") // "PostgreSQL 15.20"
	require.NoError(t, err)
	major := strings.SplitN(strings.TrimPrefix(version, "PostgreSQL "), ".", 2)[0]
	require.True(t, strings.HasPrefix(got, major), "server_version_num of %s: %s", version, got)
	require.True(t, strings.HasSuffix(got, " postgres off 16"), got)

	fi, err := os.Stat(lb.dataDir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	requireStopStartKeepsData(ctx, t, c)

	require.Contains(t, c.Log(), "database system is ready to accept connections")
	require.NotEmpty(t, c.LogTail(3))
	require.Error(t, c.Stop("bogus"))

	require.NoError(t, c.Close())
	closed = true
	if keep := os.Getenv(EnvKeep); keep == "" || keep == "0" {
		_, err = os.Stat(dir)
		require.True(t, os.IsNotExist(err), "temp dir %s should be removed", dir)
	}
}

// serverSummary connects as postgres and returns "<server_version_num>
// <current_user> <fsync> <max_worker_processes>".
func serverSummary(ctx context.Context, t *testing.T, c *Cluster) string {
	t.Helper()
	conn, err := c.Connect(ctx, "postgres", "postgres")
	require.NoError(t, err)
	defer conn.Close(ctx)
	var s string
	require.NoError(t, conn.QueryRow(ctx,
		"SELECT current_setting('server_version_num')||' '||current_user||' '||current_setting('fsync')||' '||current_setting('max_worker_processes')").Scan(&s))
	return s
}

// requireStopStartKeepsData restarts c in both modes, stops it (a second
// stop fails, connecting fails), starts it again, and checks that a table
// written before is still there.
func requireStopStartKeepsData(ctx context.Context, t *testing.T, c *Cluster) {
	t.Helper()
	require.NoError(t, c.Exec(ctx, "postgres", "CREATE TABLE survives(a int); INSERT INTO survives VALUES (42)"))

	for _, mode := range []StopMode{Fast, Immediate} {
		require.NoError(t, c.Restart(mode), "restart %s", mode)
		serverSummary(ctx, t, c)
	}
	require.NoError(t, c.Stop(Fast))
	_, err := c.Connect(ctx, "postgres", "postgres")
	require.Error(t, err, "server should be down")
	require.Error(t, c.Stop(Fast), "double stop")
	require.NoError(t, c.StartServer())

	conn, err := c.Connect(ctx, "postgres", "postgres")
	require.NoError(t, err)
	var a int
	require.NoError(t, conn.QueryRow(ctx, "SELECT a FROM survives").Scan(&a))
	require.Equal(t, 42, a)
	conn.Close(ctx)
}

func TestDSNQuote(t *testing.T) {
	require.Equal(t, "abc", dsnQuote("abc"))
	require.Equal(t, "''", dsnQuote(""))
	require.Equal(t, `'a b\'c'`, dsnQuote("a b'c"))
}
