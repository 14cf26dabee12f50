package durability

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// TestTaskDropsExtension: a superuser's task drops the extension (and, in
// other strings, drops and re-creates it): no crash, the launcher lives,
// no row of the new table is left 'running', and tasks run afterwards.
func TestTaskDropsExtension(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.ResetExtensionAtEnd(t)
	for _, q := range []string{
		"DROP EXTENSION lantern_async; CREATE EXTENSION lantern_async",
		"DROP EXTENSION lantern_async",
		"BEGIN; DROP EXTENSION lantern_async; CREATE EXTENSION lantern_async; COMMIT",
	} {
		q := fmt.Sprintf("%s /* %s */", q, testkit.Uniq("dropext"))
		old := testkit.QueryOne[uint32](t, su, "SELECT 'lantern.tasks'::regclass::oid")
		testkit.Submit(t, su, q)
		testkit.RequirePoll(t, testkit.WaitTimeout, "the task to replace or drop the extension", testkit.WhileConnected(su, func() (bool, string) {
			var now *uint32
			if err := su.QueryRow(testkit.Ctx(t), "SELECT to_regclass('lantern.tasks')::oid").Scan(&now); err != nil {
				return false, err.Error()
			}
			busy, err := testkit.ActiveWorkerPids(su, q)
			return err == nil && (now == nil || *now != old) && len(busy) == 0,
				fmt.Sprintf("lantern.tasks oid %v (was %d), workers running the task %v, err=%v", now, old, busy, err)
		}))
		if !testkit.ExtensionInstalled(t, su) {
			testkit.MustExec(t, su, "CREATE EXTENSION lantern_async")
		}
		require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), su))
		testkit.Never(t, 500*time.Millisecond, testkit.WhileConnected(su, func() (bool, string) {
			n, err := testkit.QueryRows[int64](su, "SELECT jobid FROM lantern.tasks WHERE status = 'running'")
			return err != nil || len(n) > 0, fmt.Sprintf("running %v, err=%v", n, err)
		}), "a row of the new lantern.tasks running after "+q)
		testkit.RequireSucceeded(t, su, testkit.Submit(t, su, "SELECT 1"))
		alice := testkit.Connect(t, "alice")
		testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))
	}
}
