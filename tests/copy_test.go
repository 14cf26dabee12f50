package tests

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// A copied database (CREATE DATABASE ... TEMPLATE) holds copies of the
// rows of the tasks still queued in the original: they must not run a
// second time there (issue 17 item 8). A task runs only in the database it
// was submitted in; the copy's row ends failed, saying where it belongs.

// copiedTaskSQLState is the SQLSTATE of a task whose row was copied from
// another database (object_not_in_prerequisite_state; README, "Crashes and
// restarts").
const copiedTaskSQLState = "55000"

// TestCopiedDatabaseRunsNoTaskTwice: the owner of app copies it while
// alice's task waits behind blockers that hold every slot. The task runs
// exactly once, in app; its copy in app_copy ends failed without running.
func TestCopiedDatabaseRunsNoTaskTwice(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	owner := newTempRole(t, su, "app_owner")
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s CREATEDB", owner))
	app := newExtensionDatabase(t, su, "app")
	mustExec(t, su, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", app, owner))
	dropDatabaseAtEnd(t, app+"_copy")

	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	alice := connectTo(t, cluster, app, "alice")
	jobid := submit(t, alice, traceSQL)
	require.Equal(t, "pending", queryOne[string](t, alice, "SELECT status FROM lantern.tasks WHERE jobid = $1", jobid),
		"queued behind the blockers")
	// A row left 'running' (its worker died before a scout came by): the
	// copy's must say where it belongs too, not "the server stopped".
	stale := submit(t, alice, "SELECT 1")
	closeConn(t, alice)
	appSU := connectTo(t, cluster, app, superuser)
	mustExec(t, appSU, "UPDATE lantern.tasks SET status = 'running' WHERE jobid = $1", stale)
	closeConn(t, appSU)
	requireNoClients(t, su, app)

	// The database's owner copies it (no superuser needed).
	own := connect(t, owner)
	mustExec(t, own, fmt.Sprintf("CREATE DATABASE %s_copy TEMPLATE %s", app, app))
	copyDB := app + "_copy"

	lock.release(t)
	requireSucceeded(t, su, blockers...)
	alice = connectTo(t, cluster, app, "alice")
	require.Equal(t, "succeeded", queryOne[string](t, alice, "CALL lantern.wait_task($1, '1 min', NULL)", jobid))

	cp := connectTo(t, cluster, copyDB, superuser)
	require.Equal(t, "failed", queryOne[string](t, cp, "CALL lantern.wait_task($1, '1 min', NULL)", jobid),
		"the copy's row ends without running")
	msg := queryOne[string](t, cp, "SELECT error_message FROM lantern.tasks WHERE jobid = $1", jobid)
	require.Equal(t, copiedTaskSQLState, queryOne[string](t, cp, "SELECT sqlstate FROM lantern.task_errors WHERE jobid = $1", jobid), msg)
	require.Contains(t, msg, "ERROR:  this task was submitted in another database")
	require.Contains(t, msg, fmt.Sprintf(`DETAIL:  The task belongs to database "%s"`, app))

	require.Equal(t, "failed", queryOne[string](t, cp, "CALL lantern.wait_task($1, '1 min', NULL)", stale))
	require.Contains(t, queryOne[string](t, cp, "SELECT error_message FROM lantern.tasks WHERE jobid = $1", stale),
		"ERROR:  this task was submitted in another database", "a copied 'running' row")

	trace := readTrace(t, app)
	require.Len(t, trace, 1, "the task ran once, in %s", app)
	require.Equal(t, app, trace[0].DB)
	require.Equal(t, "alice", trace[0].User)
	closeConn(t, cp)
	require.Empty(t, readTrace(t, copyDB), "the task never ran in the copy")
}
