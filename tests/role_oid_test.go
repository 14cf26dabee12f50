package tests

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tasks follow the role's OID recorded at submit, not its name (issue 6,
// item 3). The task is kept pending (every worker slot busy with the
// superuser's blockers) while the roles change.

// visibleTasks counts the rows with jobid id that conn sees in lantern.tasks
// (row-level security).
func visibleTasks(t *testing.T, role string, id int64) int {
	t.Helper()
	return queryOne[int](t, connect(t, role), "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", id)
}

// roleOid returns the OID of role.
func roleOid(t *testing.T, role string) uint32 {
	t.Helper()
	return queryOne[uint32](t, connect(t, superuser), "SELECT oid FROM pg_roles WHERE rolname = $1", role)
}

// TestDroppedAndRecreatedRoleTaskFails: a pending task whose role is dropped
// and replaced by a new role of the same name (in one transaction) is
// 'failed' with a message saying its role no longer exists; nothing runs as
// the new role, which does not see the row either.
func TestDroppedAndRecreatedRoleTaskFails(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	marker := markerTable(t, su, "recreated_role")
	// Granted to PUBLIC: a grant to the role would keep it from being dropped.
	mustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO PUBLIC", marker))
	role := newTempRole(t, su, "recreated")
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())

	conn := connect(t, role)
	id := submit(t, conn, markerInsert(marker, 1))
	require.Equal(t, "pending", deref(getTask(t, su, id).Status), "every worker is busy: the task must be pending")
	require.NoError(t, conn.Close(ctx(t)))
	oldOid := roleOid(t, role)
	mustExec(t, su, fmt.Sprintf("BEGIN; DROP ROLE %[1]s; CREATE ROLE %[1]s LOGIN; COMMIT", role))
	require.NotEqual(t, oldOid, roleOid(t, role), "a new role took the name")

	lock.release(t)
	requireSucceeded(t, su, blockers...)
	msg := requireFailedWithSQLState(t, su, id, "42704")
	require.Contains(t, msg, "no longer exists", "error_message of the task of the dropped role")
	require.Empty(t, markerValues(t, marker), "nothing may run as the new role of the same name")
	require.Equal(t, role, getTask(t, su, id).Username, "username keeps the name at submit time")
	require.Equal(t, 0, visibleTasks(t, role, id), "the new role of the same name must not see the old role's task")
	requireNoOrphans(t, su)
}

// TestRenamedRolesKeepTheirTasks: two roles swap names while one has a
// pending task. The task runs as the role that submitted it (now under the
// other name); username keeps the name at submit time; the submitter sees
// the row under its new name, the role that took its old name does not.
func TestRenamedRolesKeepTheirTasks(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	a, b := newTempRole(t, su, "swap_a"), newTempRole(t, su, "swap_b")
	who := ident(t, uniq("swap_who"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %[1]s(name text, roleid oid); GRANT SELECT, INSERT ON %[1]s TO PUBLIC", who))
	origA := roleOid(t, a)
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())

	aConn := connect(t, a)
	id := submit(t, aConn, fmt.Sprintf(
		"INSERT INTO %s SELECT session_user, (SELECT oid FROM pg_roles WHERE rolname = session_user)", who))
	require.Equal(t, "pending", deref(getTask(t, su, id).Status), "every worker is busy: the task must be pending")
	require.NoError(t, aConn.Close(ctx(t)))
	tmp := ident(t, uniq("swap_tmp"))
	mustExec(t, su, fmt.Sprintf("BEGIN; ALTER ROLE %[1]s RENAME TO %[3]s; ALTER ROLE %[2]s RENAME TO %[1]s; ALTER ROLE %[3]s RENAME TO %[2]s; COMMIT",
		a, b, tmp))
	require.Equal(t, origA, roleOid(t, b), "the submitter is now named %s", b)

	lock.release(t)
	requireSucceeded(t, su, blockers...)
	status, msg := waitTask(t, su, id)
	require.Equal(t, "succeeded", status, "the renamed submitter's task (error_message %q)", msg)
	var name string
	var oid uint32
	require.NoError(t, su.QueryRow(ctx(t), fmt.Sprintf("SELECT name, roleid FROM %s", who)).Scan(&name, &oid),
		"the task's one row in %s", who)
	require.Equal(t, b, name, "session_user inside the task: the submitting role, now named %s", b)
	require.Equal(t, origA, oid, "the OID of the task's session_user")
	require.Equal(t, a, getTask(t, su, id).Username, "username keeps the name at submit time")
	require.Equal(t, 1, visibleTasks(t, b, id), "the submitter (now %s) sees its task", b)
	require.Equal(t, 0, visibleTasks(t, a, id), "the role now named %s must not see the task", a)
}
