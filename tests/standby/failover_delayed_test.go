package standby

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestFailoverKeepsRunAfter: a task waiting for its time (run_after) when
// the primary crashes starts on the promoted standby at that time, not
// before, and once: the time is in the replicated table, and the
// promotion's start sweep notes it on the new primary's board.
func TestFailoverKeepsRunAfter(t *testing.T) {
	primary := startPrimary(t, 2)
	psu := testkit.ConnectTo(t, primary, testkit.DBName, testkit.Superuser)
	marker := testkit.Ident(t, testkit.Uniq("failover_later"))
	testkit.MustExec(t, psu, fmt.Sprintf("CREATE TABLE %s(at timestamptz)", marker))
	standby := startStandby(t, primary)

	var id int64
	var runAfter time.Time
	require.NoError(t, psu.QueryRow(testkit.Ctx(t), `
		WITH at AS (SELECT clock_timestamp() + interval '8 s' AS run_after)
		SELECT lantern.async_task($1, run_after => at.run_after), at.run_after FROM at`,
		fmt.Sprintf("INSERT INTO %s VALUES (clock_timestamp())", marker)).Scan(&id, &runAfter))
	waitCaughtUp(t, standby)
	require.NoError(t, primary.Stop(pgcluster.Immediate))
	require.NoError(t, standby.Promote(testkit.Ctx(t)))

	ssu := testkit.ConnectTo(t, standby.Cluster, testkit.DBName, testkit.Superuser)
	require.Equal(t, "pending", getTaskStatus(t, ssu, id), "after the promotion, before its time")
	testkit.RequireSucceeded(t, ssu, id)
	starts := testkit.QueryAll[time.Time](t, ssu, fmt.Sprintf("SELECT at FROM %s", marker))
	require.Len(t, starts, 1, "the task ran once")
	late := starts[0].Sub(runAfter)
	t.Logf("task %d started %v after its run_after, on the promoted standby", id, late.Round(time.Microsecond))
	require.GreaterOrEqual(t, late, time.Duration(0), "started before its run_after")
	require.Less(t, late, 2*time.Second, "after its run_after (the launcher's nap is 10 s)")
}
