package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTaskStreamDoesNotForkFast: a role that submits trivial tasks one at a
// time, each committed 20 ms after the last (so that each would find the
// previous worker gone), makes the extension start a burst of workers and
// then about two a second, not one per task. All the tasks still run.
func TestTaskStreamDoesNotForkFast(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newDroppedRole(t, su, "fork_rate")
	conn := connect(t, role)
	debugServerLog(t, su)

	const tasks = 40
	from := len(cluster.Log())
	start := time.Now()
	var ids []int64
	for range tasks {
		// The delay is the server's, before the submit: a stream of commits.
		ids = append(ids, queryOne[int64](t, conn, "SELECT lantern.async_task('SELECT 1') FROM pg_sleep(0.02)"))
	}
	requireSucceeded(t, conn, ids...)
	elapsed := time.Since(start)

	starts := workerStartsSince(from)
	// A burst of 4, then one per 500 ms; a little slack for the last one.
	allowed := 4 + int(elapsed/(500*time.Millisecond)) + 2
	t.Logf("%d tasks in %s started %d worker processes (allowed %d)", tasks, elapsed.Round(time.Millisecond), starts, allowed)
	require.LessOrEqual(t, starts, allowed, "worker processes started for one role's stream of %d tasks", tasks)
	require.Less(t, starts, tasks/2, "workers must run the tasks in batches, not one process per task")
}
