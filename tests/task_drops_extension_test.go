package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTaskDropsExtension: a superuser's task drops the extension (and, in
// other strings, drops and re-creates it): no crash, the launcher lives,
// no row of the new table is left 'running', and tasks run afterwards.
func TestTaskDropsExtension(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	resetExtensionAtEnd(t)
	for _, q := range []string{
		"DROP EXTENSION lantern_async; CREATE EXTENSION lantern_async",
		"DROP EXTENSION lantern_async",
		"BEGIN; DROP EXTENSION lantern_async; CREATE EXTENSION lantern_async; COMMIT",
	} {
		q := fmt.Sprintf("%s /* %s */", q, uniq("dropext"))
		old := queryOne[uint32](t, su, "SELECT 'lantern.tasks'::regclass::oid")
		submit(t, su, q)
		requirePoll(t, waitTimeout, "the task to replace or drop the extension", whileConnected(su, func() (bool, string) {
			var now *uint32
			if err := su.QueryRow(ctx(t), "SELECT to_regclass('lantern.tasks')::oid").Scan(&now); err != nil {
				return false, err.Error()
			}
			busy, err := activeWorkerPids(su, q)
			return err == nil && (now == nil || *now != old) && len(busy) == 0,
				fmt.Sprintf("lantern.tasks oid %v (was %d), workers running the task %v, err=%v", now, old, busy, err)
		}))
		if !extensionInstalled(t, su) {
			mustExec(t, su, "CREATE EXTENSION lantern_async")
		}
		require.NoError(t, grantExtensionAccess(ctx(t), su))
		never(t, 500*time.Millisecond, whileConnected(su, func() (bool, string) {
			n, err := queryRows[int64](su, "SELECT jobid FROM lantern.tasks WHERE status = 'running'")
			return err != nil || len(n) > 0, fmt.Sprintf("running %v, err=%v", n, err)
		}), "a row of the new lantern.tasks running after "+q)
		requireSucceeded(t, su, submit(t, su, "SELECT 1"))
		alice := connect(t, "alice")
		requireSucceeded(t, alice, submit(t, alice, "SELECT 1"))
	}
}
