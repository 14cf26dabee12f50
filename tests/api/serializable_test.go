package api

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// TestSerializableTasksDoNotConflictThroughBookkeeping: SERIALIZABLE tasks
// of different roles, each writing only its own table, run at the same
// time. Their work never conflicts, so none may fail: the extension's own
// record of their success is written after their commit (README "Crashes
// and restarts"), outside their serialization graph, and must not make
// them fail with a serialization failure (40001).
func TestSerializableTasksDoNotConflictThroughBookkeeping(t *testing.T) {
	testkit.Begin(t)
	for _, v := range []struct{ name, read string }{
		{"own table only", ""},
		{"reading lantern.tasks too", "SELECT count(*) FROM lantern.tasks; "},
	} {
		t.Run(v.name, func(t *testing.T) {
			testkit.Begin(t)
			serializableTasks(t, v.read)
		})
	}
}

func serializableTasks(t *testing.T, read string) {
	su := testkit.Connect(t, testkit.Superuser)
	var roles []string
	for range testkit.Cluster.MaxWorkers() {
		r := testkit.NewTempRole(t, su, "ssi")
		roles = append(roles, r)
		marker := testkit.MarkerTable(t, su, "ssi", r)
		q := fmt.Sprintf("BEGIN ISOLATION LEVEL SERIALIZABLE; %sINSERT INTO %s VALUES (1); "+
			"SELECT pg_sleep(random() * 0.02); COMMIT", read, marker)
		testkit.SubmitMany(t, testkit.Connect(t, r), q, 50)
	}
	testkit.RequirePoll(t, testkit.WaitTimeout, "every serializable task to finish", testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int64](su, "SELECT jobid FROM lantern.tasks WHERE username = ANY($1) AND status IN ('pending', 'running')", roles)
		return err == nil && len(n) == 0, fmt.Sprintf("%d unfinished, err=%v", len(n), err)
	}))
	failed := testkit.QueryAll[string](t, su, `SELECT format('%s %s: %s', t.status, e.sqlstate, t.error_message)
		FROM lantern.tasks t LEFT JOIN lantern.task_errors e USING (jobid)
		WHERE t.username = ANY($1) AND t.status <> 'succeeded'`, roles)
	t.Logf("%d roles × 50 serializable tasks; %d did not succeed", len(roles), len(failed))
	require.Empty(t, failed, "serializable tasks whose own work conflicts with nothing")
}
