package durability

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

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
	testkit.Begin(t)
	logFrom := len(testkit.Cluster.Log()) // crash tests that ran before kill processes on purpose
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "restart_shapes")
	require.NoError(t, su.Close(testkit.Ctx(t)))
	var all []shapeTask
	value := 0
	for _, mode := range []pgcluster.StopMode{pgcluster.Fast, pgcluster.Immediate, pgcluster.Fast, pgcluster.Immediate} {
		su := testkit.Connect(t, testkit.Superuser)
		tx, err := su.Begin(testkit.Ctx(t))
		require.NoError(t, err)
		var ids []int64
		for i := 0; i < 120; i++ {
			value++
			s := shapeTask{id: testkit.Submit(t, tx, fmt.Sprintf(restartShapes[i%len(restartShapes)].query, marker, value)), value: value, shape: i % len(restartShapes)}
			all, ids = append(all, s), append(ids, s.id)
		}
		require.NoError(t, tx.Commit(testkit.Ctx(t)))
		testkit.RequirePoll(t, testkit.WaitTimeout, "a quarter of the batch to be final", testkit.WhileConnected(su, func() (bool, string) {
			st, err := testkit.StatusesOf(su, ids)
			n := len(st) - testkit.CountStatus(st, "pending") - testkit.CountStatus(st, "running")
			return err == nil && n >= len(ids)/4, fmt.Sprintf("%d final, err=%v", n, err)
		}))
		require.NoError(t, su.Close(testkit.Ctx(t)))
		require.NoError(t, testkit.Cluster.Restart(mode))
		ok, last := testkit.ServerReady(t, testkit.WaitTimeout)
		require.True(t, ok, last)
	}
	su = testkit.Connect(t, testkit.Superuser)
	counts := map[string]int{}
	for _, s := range all {
		status, msg := testkit.WaitTask(t, su, s.id)
		n := testkit.QueryOne[int](t, su, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE a = $1", marker), s.value)
		sh := restartShapes[s.shape]
		counts[sh.name+" "+status]++
		assert.LessOrEqual(t, n, 1, "%s task %d ran twice", sh.name, s.id)
		switch {
		case sh.name == "rollback":
			assert.Equal(t, 0, n, "rollback task %d left a row", s.id)
			assert.NotEqual(t, "canceled", status)
		case sh.exact || status == "succeeded":
			assert.Equal(t, status == "succeeded", n == 1, "%s task %d: %s %q, %d rows", sh.name, s.id, status, testkit.FirstLine(msg), n)
		}
	}
	t.Logf("outcomes: %v", counts)
	require.Empty(t, testkit.CrashMarkers(testkit.Cluster.Log()[logFrom:]), "no server process crashed during the restarts")
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
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.DebugServerLog(t, su)
	role := testkit.NewTempRole(t, su, "self_kill")
	conn := testkit.Connect(t, role)
	from := len(testkit.Cluster.Log())
	started := time.Now()
	testkit.SubmitMany(t, conn, "SELECT pg_terminate_backend(pg_backend_pid())", 40)
	testkit.Never(t, selfKillWindow, func() (bool, string) {
		n := testkit.WorkerStartsSince(from)
		return n > selfKillMaxStarts, fmt.Sprintf("%d worker processes started in %v", n, time.Since(started).Round(time.Millisecond))
	}, fmt.Sprintf("at most %d worker starts in %v for tasks that terminate their own backend", selfKillMaxStarts, selfKillWindow))
	t.Logf("%d worker processes started in %v", testkit.WorkerStartsSince(from), time.Since(started).Round(time.Millisecond))

	testkit.MustExec(t, su, "DELETE FROM lantern.tasks WHERE username = $1 AND status = 'pending'", role)
	bob := testkit.Connect(t, "bob")
	start := time.Now()
	testkit.RequireSucceeded(t, bob, testkit.Submit(t, bob, "SELECT 1"))
	require.Less(t, time.Since(start), 2*time.Second, "another role's task while the role is in backoff")
}
