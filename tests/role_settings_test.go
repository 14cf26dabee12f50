package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ALTER ROLE self SET <param>, as an ordinary role may, neither breaks nor
// hijacks the bookkeeping (README, "What is trusted, and why").

type roleSettingProbe struct {
	set      string
	mayFail  bool // the setting legitimately fails the task (as in psql)
	role     string
	ins, sel int64
}

var roleSettingProbes = []string{
	"search_path = pg_temp, public",
	"default_transaction_isolation = 'serializable'",
	"default_transaction_isolation = 'repeatable read'",
	"default_transaction_read_only = on",
	"default_transaction_deferrable = on",
	"statement_timeout = '1ms'",
	"lock_timeout = '1ms'",
	"idle_in_transaction_session_timeout = '1ms'",
	"idle_session_timeout = '1ms'",
	"work_mem = '64kB'",
	"row_security = off",
	"client_min_messages = error",
	"default_tablespace = 'pg_global'",
	"temp_tablespaces = 'pg_global'",
	"synchronous_commit = off",
	"force_parallel_mode = on",
	"enable_seqscan = off",
	"enable_indexscan = off",
	"plan_cache_mode = force_generic_plan",
	"transform_null_equals = on",
	"standard_conforming_strings = off",
	"DateStyle = 'SQL, DMY'",
	"IntervalStyle = 'sql_standard'",
	"TimeZone = 'Pacific/Kiritimati'",
	"extra_float_digits = -15",
	"array_nulls = off",
	"check_function_bodies = off",
	"default_toast_compression = 'pglz'",
	"bytea_output = 'escape'",
	"xmloption = 'document'",
	"jit = on",
	"max_parallel_workers_per_gather = 0",
	"temp_buffers = '100'",
	"application_name = 'lantern_async launcher'",
	"vacuum_freeze_min_age = 0",
	"gin_pending_list_limit = '64kB'",
	"exit_on_error = on",
	"cursor_tuple_fraction = 0",
	"geqo_threshold = 2",
	"from_collapse_limit = 1",
}

// The settings that fail an INSERT in psql too.
var roleSettingsThatFailTasks = map[string]bool{
	"default_transaction_read_only = on": true,
	"statement_timeout = '1ms'":          true,
	"default_tablespace = 'pg_global'":   true,
}

// TestRoleSettingsMatrix: each role sets one parameter on itself and
// submits an INSERT and a SELECT 1. Every task ends final, succeeded ⇔ its
// row exists (once), tasks of a role that set nothing that fails them in
// psql succeed, and no role became a superuser.
func TestRoleSettingsMatrix(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	marker := markerTable(t, su, "role_gucs")
	sub := connect(t, superuser)
	var probes []*roleSettingProbe
	for i, set := range roleSettingProbes {
		p := &roleSettingProbe{set: set, mayFail: roleSettingsThatFailTasks[set], role: newTempRole(t, su, "role_guc")}
		probes = append(probes, p)
		mustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO %s", marker, p.role))
		c := connectTo(t, cluster, dbName, p.role)
		_, err := c.Exec(ctx(t), fmt.Sprintf("ALTER ROLE %s SET %s", p.role, p.set))
		require.NoError(t, c.Close(ctx(t)))
		if err != nil { // e.g. no privilege on the tablespace: nothing to probe
			t.Logf("%s: ALTER ROLE refused: %v", p.set, err)
			p.role = ""
			continue
		}
		// Submitted as the role from a session that does not have its settings.
		mustExec(t, sub, "SET ROLE "+p.role)
		p.ins = submit(t, sub, markerInsert(marker, i))
		p.sel = submit(t, sub, "SELECT 1")
		mustExec(t, sub, "RESET ROLE")
	}
	for i, p := range probes {
		if p.role == "" {
			continue
		}
		insStatus, insMsg := waitTask(t, su, p.ins)
		selStatus, selMsg := waitTask(t, su, p.sel)
		n := queryOne[int](t, su, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE a = $1", marker), i)
		t.Logf("%-50s insert: %s %q; select: %s %q; rows %d", p.set, insStatus, firstLine(insMsg), selStatus, firstLine(selMsg), n)
		assert.Equal(t, insStatus == "succeeded", n == 1, "%s: insert %s but %d rows", p.set, insStatus, n)
		assert.LessOrEqual(t, n, 1, "%s: the insert ran more than once", p.set)
		if !p.mayFail {
			assert.Equal(t, "succeeded", insStatus, "%s: insert: %s", p.set, insMsg)
			assert.Equal(t, "succeeded", selStatus, "%s: select: %s", p.set, selMsg)
		}
		require.False(t, queryOne[bool](t, su, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", p.role))
	}
	bob := connect(t, "bob")
	requireSucceeded(t, bob, submit(t, bob, "SELECT 1"))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// TestExitOnErrorKeepsTaskError: exit_on_error, which a role may set for
// itself, would make a task's ERROR a FATAL and lose it with the process.
// The task still fails with its own error (22012 "division by zero"), and
// the worker goes on with the role's next task (the three tasks are
// committed together and every other slot is busy, so one worker runs
// them: same pg_backend_pid).
func TestExitOnErrorKeepsTaskError(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newTempRole(t, su, "exit_on_error")
	marker := markerTable(t, su, "exit_on_error", role)
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET exit_on_error = on", role))
	conn := connect(t, role)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers()-1)

	tx := beginHeld(t, conn)
	before := submit(t, conn, fmt.Sprintf("INSERT INTO %s SELECT pg_backend_pid()", marker))
	failing := submit(t, conn, "SELECT 1/0")
	after := submit(t, conn, fmt.Sprintf("INSERT INTO %s SELECT pg_backend_pid()", marker))
	tx.end(t, "COMMIT")

	requireSucceeded(t, conn, before)
	msg := requireFailedWithSQLState(t, conn, failing, "22012")
	require.Contains(t, msg, "division by zero", "error_message of a task that failed under exit_on_error")
	requireSucceeded(t, conn, after)
	pids := markerValues(t, marker)
	require.Len(t, pids, 2)
	require.Equal(t, pids[0], pids[1], "the worker survived the task's error: both inserts ran in one process")

	lock.release(t)
	requireSucceeded(t, su, blockers...)
}
