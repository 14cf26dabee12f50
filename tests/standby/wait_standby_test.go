package standby

import (
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// wait_task on a hot standby refuses at once (25006), for a finished task
// as for an unknown one, and registers no waiter: the tasks run on the
// primary, and no commit on the standby would ever wake it (README "Wait").
// A cluster pair of its own, as in standby_test.go.
func TestWaitTaskRefusedOnAStandby(t *testing.T) {
	primary := startPrimary(t, 1)
	psu := testkit.ConnectTo(t, primary, testkit.DBName, testkit.Superuser)
	done := testkit.Submit(t, psu, "SELECT 1")
	testkit.RequireSucceeded(t, psu, done)

	standby := startStandby(t, primary)
	ssu := testkit.ConnectTo(t, standby.Cluster, testkit.DBName, testkit.Superuser)
	waitStatuses(t, ssu, []int64{done}, []string{"succeeded"})
	for _, jobid := range []int64{done, done + 1_000_000} {
		_, err := ssu.Exec(testkit.Ctx(t), "CALL lantern.wait_task($1, '1 min', NULL)", jobid)
		requireReadOnlyError(t, err, "lantern.wait_task()", "wait_task")
	}
	require.Equal(t, "succeeded", testkit.QueryOne[string](t, psu, "CALL lantern.wait_task($1, '1 min', NULL)", done),
		"on the primary it answers")
}
