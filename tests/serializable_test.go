package tests

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSerializableTasksDoNotConflictThroughBookkeeping: SERIALIZABLE tasks
// of different roles, each writing only its own table, run at the same
// time. Their work never conflicts, so none may fail: the extension's own
// record of their success is written after their commit (README "Crashes
// and restarts"), outside their serialization graph, and must not make
// them fail with a serialization failure (40001).
func TestSerializableTasksDoNotConflictThroughBookkeeping(t *testing.T) {
	begin(t)
	for _, v := range []struct{ name, read string }{
		{"own table only", ""},
		{"reading lantern.tasks too", "SELECT count(*) FROM lantern.tasks; "},
	} {
		t.Run(v.name, func(t *testing.T) {
			begin(t)
			serializableTasks(t, v.read)
		})
	}
}

func serializableTasks(t *testing.T, read string) {
	su := connect(t, superuser)
	var roles []string
	for range cluster.MaxWorkers() {
		r := newTempRole(t, su, "ssi")
		roles = append(roles, r)
		marker := markerTable(t, su, "ssi", r)
		q := fmt.Sprintf("BEGIN ISOLATION LEVEL SERIALIZABLE; %sINSERT INTO %s VALUES (1); "+
			"SELECT pg_sleep(random() * 0.02); COMMIT", read, marker)
		submitMany(t, connect(t, r), q, 50)
	}
	requirePoll(t, waitTimeout, "every serializable task to finish", whileConnected(su, func() (bool, string) {
		n, err := queryRows[int64](su, "SELECT jobid FROM lantern.tasks WHERE username = ANY($1) AND status IN ('pending', 'running')", roles)
		return err == nil && len(n) == 0, fmt.Sprintf("%d unfinished, err=%v", len(n), err)
	}))
	failed := queryAll[string](t, su, `SELECT format('%s %s: %s', t.status, e.sqlstate, t.error_message)
		FROM lantern.tasks t LEFT JOIN lantern.task_errors e USING (jobid)
		WHERE t.username = ANY($1) AND t.status <> 'succeeded'`, roles)
	t.Logf("%d roles × 50 serializable tasks; %d did not succeed", len(roles), len(failed))
	require.Empty(t, failed, "serializable tasks whose own work conflicts with nothing")
}
