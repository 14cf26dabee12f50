package cancel

import (
	"context"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

var rssAnonRE = regexp.MustCompile(`(?m)^RssAnon:\s+(\d+) kB$`)

// rssAnonKB reads a server process's private resident memory through the
// server itself (pg_read_file as superuser), so that it works against a
// server in a container too.
func rssAnonKB(ctx context.Context, su *pgx.Conn, pid int) (int, error) {
	var status string
	if err := su.QueryRow(ctx, "SELECT pg_read_file('/proc/' || $1::int || '/status')", pid).Scan(&status); err != nil {
		return 0, err
	}
	m := rssAnonRE.FindStringSubmatch(status)
	if m == nil {
		return 0, nil
	}
	return strconv.Atoi(m[1])
}

// cancelPeakGrowthKB submits n tasks for later as a fresh role, cancels
// them with cancel_all_async_tasks() from a fresh session of the role, and
// returns how much that backend's private memory grew at the peak sampled.
func cancelPeakGrowthKB(t *testing.T, su *pgx.Conn, n int) int {
	t.Helper()
	watcher := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_mem")
	submitter := testkit.Connect(t, role)
	testkit.MustExec(t, submitter, "SELECT lantern.async_task('SELECT 1', run_after => now() + interval '1 hour') FROM generate_series(1, $1)", n)
	testkit.MustExec(t, su, "VACUUM ANALYZE lantern.tasks, lantern.task_owners")
	conn := testkit.Connect(t, role)
	pid := testkit.QueryOne[int](t, conn, "SELECT pg_backend_pid()")
	before, err := rssAnonKB(testkit.Ctx(t), watcher, pid)
	require.NoError(t, err)
	peak := before
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // sampled from another session while the call runs
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if kb, err := rssAnonKB(testkit.Ctx(t), watcher, pid); err == nil {
				peak = max(peak, kb)
			}
		}
	}()
	start := time.Now()
	testkit.MustExec(t, conn, "SELECT lantern.cancel_all_async_tasks()")
	close(done)
	wg.Wait()
	t.Logf("cancel_all_async_tasks() over %d pending tasks: %s, RssAnon %d kB before, %d kB at the peak sampled",
		n, time.Since(start).Round(time.Millisecond), before, peak)
	require.Equal(t, map[string]int{"canceled": n}, testkit.StatusCounts(t, su, role))
	return peak - before
}

// TestCancelAllMemoryStaysFlat: the memory cancel_all_async_tasks() takes
// does not grow with the number of tasks. It cancels them in batches and
// frees each batch's rows; in one statement it held every jobid and every
// returned row to the end (53 MB more for 100,000 tasks than before the
// call, about 145 MB for 1,000,000), and its check for rows left hashed
// every owner row of the role. A batch takes 10 to 30 MB while it runs
// (measured here: 26 MB at 100,000 tasks, 17 MB at 300,000).
func TestCancelAllMemoryStaysFlat(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	grew := cancelPeakGrowthKB(t, su, 200_000)
	require.Less(t, grew, 48*1024, "the backend's private memory grew by %d kB for 200,000 tasks", grew)
}
