package timeouts

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

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
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "role_gucs")
	sub := testkit.Connect(t, testkit.Superuser)
	var probes []*roleSettingProbe
	for i, set := range roleSettingProbes {
		p := &roleSettingProbe{set: set, mayFail: roleSettingsThatFailTasks[set], role: testkit.NewTempRole(t, su, "role_guc")}
		probes = append(probes, p)
		testkit.MustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO %s", marker, p.role))
		c := testkit.ConnectTo(t, testkit.Cluster, testkit.DBName, p.role)
		_, err := c.Exec(testkit.Ctx(t), fmt.Sprintf("ALTER ROLE %s SET %s", p.role, p.set))
		require.NoError(t, c.Close(testkit.Ctx(t)))
		if err != nil { // e.g. no privilege on the tablespace: nothing to probe
			t.Logf("%s: ALTER ROLE refused: %v", p.set, err)
			p.role = ""
			continue
		}
		// Submitted as the role from a session that does not have its settings.
		testkit.MustExec(t, sub, "SET ROLE "+p.role)
		p.ins = testkit.Submit(t, sub, testkit.MarkerInsert(marker, i))
		p.sel = testkit.Submit(t, sub, "SELECT 1")
		testkit.MustExec(t, sub, "RESET ROLE")
	}
	for i, p := range probes {
		if p.role == "" {
			continue
		}
		insStatus, insMsg := testkit.WaitTask(t, su, p.ins)
		selStatus, selMsg := testkit.WaitTask(t, su, p.sel)
		n := testkit.QueryOne[int](t, su, fmt.Sprintf("SELECT count(*)::int FROM %s WHERE a = $1", marker), i)
		t.Logf("%-50s insert: %s %q; select: %s %q; rows %d", p.set, insStatus, testkit.FirstLine(insMsg), selStatus, testkit.FirstLine(selMsg), n)
		assert.Equal(t, insStatus == "succeeded", n == 1, "%s: insert %s but %d rows", p.set, insStatus, n)
		assert.LessOrEqual(t, n, 1, "%s: the insert ran more than once", p.set)
		if !p.mayFail {
			assert.Equal(t, "succeeded", insStatus, "%s: insert: %s", p.set, insMsg)
			assert.Equal(t, "succeeded", selStatus, "%s: select: %s", p.set, selMsg)
		}
		require.False(t, testkit.QueryOne[bool](t, su, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", p.role))
	}
	bob := testkit.Connect(t, "bob")
	testkit.RequireSucceeded(t, bob, testkit.Submit(t, bob, "SELECT 1"))
}

// TestExitOnErrorKeepsTaskError: exit_on_error, which a role may set for
// itself, would make a task's ERROR a FATAL and lose it with the process.
// The task still fails with its own error (22012 "division by zero"), and
// the worker goes on with the role's next task (the three tasks are
// committed together and every other slot is busy, so one worker runs
// them: same pg_backend_pid).
func TestExitOnErrorKeepsTaskError(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "exit_on_error")
	marker := testkit.MarkerTable(t, su, "exit_on_error", role)
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s SET exit_on_error = on", role))
	conn := testkit.Connect(t, role)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers()-1)

	tx := testkit.BeginHeld(t, conn)
	before := testkit.Submit(t, conn, fmt.Sprintf("INSERT INTO %s SELECT pg_backend_pid()", marker))
	failing := testkit.Submit(t, conn, "SELECT 1/0")
	after := testkit.Submit(t, conn, fmt.Sprintf("INSERT INTO %s SELECT pg_backend_pid()", marker))
	tx.End(t, "COMMIT")

	testkit.RequireSucceeded(t, conn, before)
	msg := testkit.RequireFailedWithSQLState(t, conn, failing, "22012")
	require.Contains(t, msg, "division by zero", "error_message of a task that failed under exit_on_error")
	testkit.RequireSucceeded(t, conn, after)
	pids := testkit.MarkerValues(t, marker)
	require.Len(t, pids, 2)
	require.Equal(t, pids[0], pids[1], "the worker survived the task's error: both inserts ran in one process")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}
