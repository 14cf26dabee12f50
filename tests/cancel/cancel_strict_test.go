package cancel

import (
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lantern.cancel_task() returning true means the task ends
// 'canceled'. This is the strict form of TestCancelRaceWithClaim, which
// tolerates "true, then succeeded".

const (
	// raceRounds is how many tasks are canceled at a random point of the
	// window from their submit's commit through their claim to their end.
	raceRounds = 240
	// raceDelaySteps spreads the cancels over 0, 2, ..., 2*(raceDelaySteps-1)
	// ms after the commit.
	raceDelaySteps = 12
)

// racePair is one round: a target task canceled soon after its commit, and
// a follow-up task of the same role committed with it (so it runs right
// after the target, possibly in the same worker), which is never canceled.
type racePair struct {
	target, follow int64
	returned       bool // what cancel_task(target) returned
}

// runCancelRound submits the pair in one transaction, then cancels the
// target after delayMs milliseconds (slept on the server side, in the same
// statement) and waits until both are final, so that each round starts on
// an idle queue and its cancel lands at a different point of the claim.
func runCancelRound(t *testing.T, conn, su *pgx.Conn, marker string, i, delayMs int) racePair {
	t.Helper()
	target := testkit.MarkerInsert(marker, i)
	if i%2 == 1 {
		// A short tail: the cancel may land while the string runs.
		target += "; SELECT pg_sleep(0.01)"
	}
	tx := testkit.BeginHeld(t, conn)
	p := racePair{target: testkit.Submit(t, conn, target)}
	p.follow = testkit.Submit(t, conn, "SELECT pg_sleep(0.005); "+testkit.MarkerInsert(marker, raceRounds+i))
	tx.End(t, "COMMIT")

	var got *bool
	require.NoError(t, conn.QueryRow(testkit.Ctx(t),
		"SELECT lantern.cancel_task($1) FROM (SELECT pg_sleep($2)) AS d", p.target, float64(delayMs)/1000).Scan(&got),
		"cancel_task(%d)", p.target)
	require.NotNil(t, got, "cancel_task(%d) returned NULL", p.target)
	p.returned = *got
	testkit.WaitAllFinal(t, su, []int64{p.target, p.follow})
	return p
}

// TestCancelTrueMeansCanceled: for every task, cancel_task() returned true
// exactly when the task ended 'canceled' (with no effect); a task whose
// cancel returned false succeeded with its effect present once; and the
// follow-up task, never canceled, always succeeded: a late cancel signal
// never hits the next task.
func TestCancelTrueMeansCanceled(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "cancel_strict")
	conn := testkit.Connect(t, role)
	marker := testkit.MarkerTable(t, su, "cancel_strict", role)

	pairs := make([]racePair, raceRounds)
	for i := range raceRounds {
		pairs[i] = runCancelRound(t, conn, su, marker, i, 2*(i%raceDelaySteps))
	}

	present := map[int]int{}
	for _, v := range testkit.MarkerValues(t, marker) {
		present[v]++
	}
	ends := taskEnds(t, su)
	var canceled, trueNotCanceled, falseCanceled int
	for i, p := range pairs {
		e, f := ends[p.target], ends[p.follow]
		switch e.status {
		case "canceled":
			canceled++
			assert.Equal(t, canceledEnd, e.withoutDuration(), "canceled task %d", p.target)
			assert.True(t, e.hasDuration, "canceled task %d has a duration", p.target)
			assert.Zero(t, present[i], "task %d is canceled but its insert is present", p.target)
		case "succeeded":
			assert.Equal(t, 1, present[i], "task %d succeeded: its insert must be present once", p.target)
		default:
			t.Errorf("task %d ended %+v: want canceled or succeeded", p.target, e)
		}
		if p.returned && e.status != "canceled" {
			trueNotCanceled++
			t.Errorf("cancel_task(%d) returned true (%d ms after commit), but the task ended %q", p.target, 2*(i%raceDelaySteps), e.status)
		}
		if !p.returned && e.status == "canceled" {
			falseCanceled++
			t.Errorf("cancel_task(%d) returned false, but the task ended canceled", p.target)
		}
		assert.Equal(t, "succeeded", f.status, "follow-up task %d of task %d: %+v", p.follow, p.target, f)
		assert.Equal(t, 1, present[raceRounds+i], "follow-up task %d: its insert must be present once", p.follow)
	}
	t.Logf("%d rounds: %d canceled, %d true but not canceled, %d false but canceled", raceRounds, canceled, trueNotCanceled, falseCanceled)
	// Both outcomes must occur, or the rounds did not cover the race.
	require.Positive(t, canceled, "no cancel landed in time: the rounds missed the window")
	require.Less(t, canceled, raceRounds, "every cancel landed before the claim: the rounds missed the window")
}

// taskEnd is how a task ended: status, error_message, whether it has a
// duration, and its lantern.task_errors.sqlstate.
type taskEnd struct {
	status, message, sqlstate string
	hasDuration               bool
}

// canceledEnd is the end of a task stopped by cancel_task (duration aside).
var canceledEnd = taskEnd{status: "canceled", message: testkit.CanceledMessage, sqlstate: "57014"}

func (e taskEnd) withoutDuration() taskEnd {
	e.hasDuration = false
	return e
}

// taskEnds reads every task's end in one query (su: a superuser connection).
func taskEnds(t *testing.T, su *pgx.Conn) map[int64]taskEnd {
	t.Helper()
	rows, err := su.Query(testkit.Ctx(t), `
		SELECT t.jobid, coalesce(t.status, ''), coalesce(t.error_message, ''), coalesce(e.sqlstate, ''), t.duration IS NOT NULL
		FROM lantern.tasks t LEFT JOIN lantern.task_errors e USING (jobid)`)
	require.NoError(t, err)
	ends := map[int64]taskEnd{}
	for rows.Next() {
		var id int64
		var e taskEnd
		require.NoError(t, rows.Scan(&id, &e.status, &e.message, &e.sqlstate, &e.hasDuration))
		ends[id] = e
	}
	require.NoError(t, rows.Err())
	return ends
}
