package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Task shapes other than a single statement across restarts, and tasks
// that end their own process (README, "Crashes and restarts").

type taskShape struct {
	name  string
	query string // %[1]s marker, %[2]d value
	exact bool   // one transaction: succeeded ⇔ row, also across a crash
}

var restartShapes = []taskShape{
	{"block", "BEGIN; SELECT pg_sleep(0.02); INSERT INTO %[1]s VALUES (%[2]d); COMMIT", true},
	{"multi", "INSERT INTO %[1]s VALUES (%[2]d); SELECT pg_sleep(0.02)", true},
	{"single", "INSERT INTO %[1]s SELECT %[2]d FROM pg_sleep(0.02)", true},
	{"commit-mid", "BEGIN; INSERT INTO %[1]s VALUES (%[2]d); COMMIT; SELECT pg_sleep(0.02)", false},
	{"rollback", "BEGIN; INSERT INTO %[1]s VALUES (%[2]d); SELECT pg_sleep(0.02); ROLLBACK", false},
	{"savepoint", "BEGIN; SAVEPOINT a; INSERT INTO %[1]s VALUES (%[2]d); RELEASE a; SELECT pg_sleep(0.02); COMMIT", true},
}

type shapeTask struct {
	id           int64
	value, shape int
}

// TestOutcomeShapesAcrossRestarts: 120 tasks of each batch (six shapes),
// then a fast or immediate restart once a quarter of the batch is final.
// Every task ends final, never runs twice, and succeeded ⇔ its row exists
// for the shapes that are one transaction (and whenever it succeeded).
func TestOutcomeShapesAcrossRestarts(t *testing.T) {
	begin(t)
	logFrom := len(cluster.Log()) // crash tests that ran before kill processes on purpose
	su := connect(t, superuser)
	marker := markerTable(t, su, "restart_shapes")
	require.NoError(t, su.Close(ctx(t)))
	var all []shapeTask
	value := 0
	for _, mode := range []pgcluster.StopMode{pgcluster.Fast, pgcluster.Immediate, pgcluster.Fast, pgcluster.Immediate} {
		su := connect(t, superuser)
		tx, err := su.Begin(ctx(t))
		require.NoError(t, err)
		var ids []int64
		for i := 0; i < 120; i++ {
			value++
			s := shapeTask{id: submit(t, tx, fmt.Sprintf(restartShapes[i%len(restartShapes)].query, marker, value)), value: value, shape: i % len(restartShapes)}
			all, ids = append(all, s), append(ids, s.id)
		}
		require.NoError(t, tx.Commit(ctx(t)))
		requirePoll(t, waitTimeout, "a quarter of the batch to be final", whileConnected(su, func() (bool, string) {
			st, err := statusesOf(su, ids)
			n := len(st) - countStatus(st, "pending") - countStatus(st, "running")
			return err == nil && n >= len(ids)/4, fmt.Sprintf("%d final, err=%v", n, err)
		}))
		require.NoError(t, su.Close(ctx(t)))
		require.NoError(t, cluster.Restart(mode))
		ok, last := serverReady(t, waitTimeout)
		require.True(t, ok, last)
	}
	su = connect(t, superuser)
	counts := map[string]int{}
	for _, s := range all {
		status, msg := waitTask(t, su, s.id)
		n := queryOne[int](t, su, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE a = $1", marker), s.value)
		sh := restartShapes[s.shape]
		counts[sh.name+" "+status]++
		assert.LessOrEqual(t, n, 1, "%s task %d ran twice", sh.name, s.id)
		switch {
		case sh.name == "rollback":
			assert.Equal(t, 0, n, "rollback task %d left a row", s.id)
			assert.NotEqual(t, "canceled", status)
		case sh.exact || status == "succeeded":
			assert.Equal(t, status == "succeeded", n == 1, "%s task %d: %s %q, %d rows", sh.name, s.id, status, firstLine(msg), n)
		}
	}
	t.Logf("outcomes: %v", counts)
	require.Empty(t, crashMarkers(cluster.Log()[logFrom:]), "no server process crashed during the restarts")
}

const (
	selfKillWindow    = 5 * time.Second
	selfKillMaxStarts = 15 // "a few per second" at most
)

// TestSelfTerminatingTasksDoNotForkLoop: 40 tasks that terminate their own
// backend make the extension start at most a few worker processes in 5 s
// (the role is relaunched with a growing delay), and another role's task
// still runs at once.
func TestSelfTerminatingTasksDoNotForkLoop(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	debugServerLog(t, su)
	role := newTempRole(t, su, "self_kill")
	conn := connect(t, role)
	from := len(cluster.Log())
	started := time.Now()
	submitMany(t, conn, "SELECT pg_terminate_backend(pg_backend_pid())", 40)
	never(t, selfKillWindow, func() (bool, string) {
		n := workerStartsSince(from)
		return n > selfKillMaxStarts, fmt.Sprintf("%d worker processes started in %v", n, time.Since(started).Round(time.Millisecond))
	}, fmt.Sprintf("at most %d worker starts in %v for tasks that terminate their own backend", selfKillMaxStarts, selfKillWindow))
	t.Logf("%d worker processes started in %v", workerStartsSince(from), time.Since(started).Round(time.Millisecond))

	mustExec(t, su, "DELETE FROM lantern.tasks WHERE username = $1 AND status = 'pending'", role)
	bob := connect(t, "bob")
	start := time.Now()
	requireSucceeded(t, bob, submit(t, bob, "SELECT 1"))
	require.Less(t, time.Since(start), 2*time.Second, "another role's task while the role is in backoff")
}
