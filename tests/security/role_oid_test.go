package security

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// Tasks follow the role's OID recorded at submit, not its name. The task is kept pending (every worker slot busy with the
// superuser's blockers) while the roles change.

// visibleTasks counts the rows with jobid id that conn sees in lantern.tasks
// (row-level security).
func visibleTasks(t *testing.T, role string, id int64) int {
	t.Helper()
	return testkit.QueryOne[int](t, testkit.Connect(t, role), "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", id)
}

// roleOid returns the OID of role.
func roleOid(t *testing.T, role string) uint32 {
	t.Helper()
	return testkit.QueryOne[uint32](t, testkit.Connect(t, testkit.Superuser), "SELECT oid FROM pg_roles WHERE rolname = $1", role)
}

// TestDroppedAndRecreatedRoleTaskFails: a pending task whose role is dropped
// and replaced by a new role of the same name (in one transaction) is
// 'failed' with a message saying its role no longer exists; nothing runs as
// the new role, which does not see the row either.
func TestDroppedAndRecreatedRoleTaskFails(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "recreated_role")
	// Granted to PUBLIC: a grant to the role would keep it from being dropped.
	testkit.MustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO PUBLIC", marker))
	role := testkit.NewTempRole(t, su, "recreated")
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())

	conn := testkit.Connect(t, role)
	id := testkit.Submit(t, conn, testkit.MarkerInsert(marker, 1))
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, id).Status), "every worker is busy: the task must be pending")
	require.NoError(t, conn.Close(testkit.Ctx(t)))
	oldOid := roleOid(t, role)
	testkit.MustExec(t, su, fmt.Sprintf("BEGIN; DROP ROLE %[1]s; CREATE ROLE %[1]s LOGIN; COMMIT", role))
	require.NotEqual(t, oldOid, roleOid(t, role), "a new role took the name")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	msg := testkit.RequireFailedWithSQLState(t, su, id, "42704")
	require.Contains(t, msg, "no longer exists", "error_message of the task of the dropped role")
	require.Empty(t, testkit.MarkerValues(t, marker), "nothing may run as the new role of the same name")
	require.Equal(t, role, testkit.GetTask(t, su, id).Username, "username keeps the name at submit time")
	require.Equal(t, 0, visibleTasks(t, role, id), "the new role of the same name must not see the old role's task")
	testkit.RequireNoOrphans(t, su)
}

// TestRenamedRolesKeepTheirTasks: two roles swap names while one has a
// pending task. The task runs as the role that submitted it (now under the
// other name); username keeps the name at submit time; the submitter sees
// the row under its new name, the role that took its old name does not.
func TestRenamedRolesKeepTheirTasks(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	a, b := testkit.NewTempRole(t, su, "swap_a"), testkit.NewTempRole(t, su, "swap_b")
	who := testkit.Ident(t, testkit.Uniq("swap_who"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %[1]s(name text, roleid oid); GRANT SELECT, INSERT ON %[1]s TO PUBLIC", who))
	origA := roleOid(t, a)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())

	aConn := testkit.Connect(t, a)
	id := testkit.Submit(t, aConn, fmt.Sprintf(
		"INSERT INTO %s SELECT session_user, (SELECT oid FROM pg_roles WHERE rolname = session_user)", who))
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, id).Status), "every worker is busy: the task must be pending")
	require.NoError(t, aConn.Close(testkit.Ctx(t)))
	tmp := testkit.Ident(t, testkit.Uniq("swap_tmp"))
	testkit.MustExec(t, su, fmt.Sprintf("BEGIN; ALTER ROLE %[1]s RENAME TO %[3]s; ALTER ROLE %[2]s RENAME TO %[1]s; ALTER ROLE %[3]s RENAME TO %[2]s; COMMIT",
		a, b, tmp))
	require.Equal(t, origA, roleOid(t, b), "the submitter is now named %s", b)

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	status, msg := testkit.WaitTask(t, su, id)
	require.Equal(t, "succeeded", status, "the renamed submitter's task (error_message %q)", msg)
	var name string
	var oid uint32
	require.NoError(t, su.QueryRow(testkit.Ctx(t), fmt.Sprintf("SELECT name, roleid FROM %s", who)).Scan(&name, &oid),
		"the task's one row in %s", who)
	require.Equal(t, b, name, "session_user inside the task: the submitting role, now named %s", b)
	require.Equal(t, origA, oid, "the OID of the task's session_user")
	require.Equal(t, a, testkit.GetTask(t, su, id).Username, "username keeps the name at submit time")
	require.Equal(t, 1, visibleTasks(t, b, id), "the submitter (now %s) sees its task", b)
	require.Equal(t, 0, visibleTasks(t, a, id), "the role now named %s must not see the task", a)
}
