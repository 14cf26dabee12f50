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
	tbl := testkit.StartTable(t, psu)
	standby := startStandby(t, primary)

	d := testkit.SubmitTimedAfter(t, psu, tbl, 8*time.Second)
	waitCaughtUp(t, standby)
	require.NoError(t, primary.Stop(pgcluster.Immediate))
	require.NoError(t, standby.Promote(testkit.Ctx(t)))

	ssu := testkit.ConnectTo(t, standby.Cluster, testkit.DBName, testkit.Superuser)
	require.Equal(t, "pending", getTaskStatus(t, ssu, d.ID), "after the promotion, before its time")
	late := d.StartedAt(t, ssu, testkit.WaitTimeout).Sub(d.RunAfter)
	require.Equal(t, 1, testkit.QueryOne[int](t, ssu, fmt.Sprintf("SELECT count(*)::int FROM %s", tbl)), "the task ran once")
	t.Logf("task %d started %v after its run_after, on the promoted standby", d.ID, late.Round(time.Microsecond))
	require.GreaterOrEqual(t, late, time.Duration(0), "started before its run_after")
	require.Less(t, late, 2*time.Second, "after its run_after (the launcher's nap is 10 s)")
}
