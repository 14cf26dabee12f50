package databases

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// A copied database (CREATE DATABASE ... TEMPLATE) holds copies of the
// rows of the tasks still queued in the original: they must not run a
// second time there. A task runs only in the database it
// was submitted in; the copy's row ends failed, saying where it belongs.

// copiedTaskSQLState is the SQLSTATE of a task whose row was copied from
// another database (object_not_in_prerequisite_state; README, "Crashes and
// restarts").
const copiedTaskSQLState = "55000"

// TestCopiedDatabaseRunsNoTaskTwice: the owner of app copies it while
// alice's task waits behind blockers that hold every slot. The task runs
// exactly once, in app; its copy in app_copy ends failed without running.
func TestCopiedDatabaseRunsNoTaskTwice(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	owner := testkit.NewTempRole(t, su, "app_owner")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s CREATEDB", owner))
	app := testkit.NewExtensionDatabase(t, su, "app")
	testkit.MustExec(t, su, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", app, owner))
	testkit.DropDatabaseAtEnd(t, app+"_copy")

	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	alice := testkit.ConnectTo(t, testkit.Cluster, app, "alice")
	jobid := testkit.Submit(t, alice, testkit.TraceSQL)
	require.Equal(t, "pending", testkit.QueryOne[string](t, alice, "SELECT status FROM lantern.tasks WHERE jobid = $1", jobid),
		"queued behind the blockers")
	// A row left 'running' (its worker died before a scout came by): the
	// copy's must say where it belongs too, not "the server stopped".
	stale := testkit.Submit(t, alice, "SELECT 1")
	testkit.CloseConn(t, alice)
	appSU := testkit.ConnectTo(t, testkit.Cluster, app, testkit.Superuser)
	testkit.MustExec(t, appSU, "UPDATE lantern.tasks SET status = 'running' WHERE jobid = $1", stale)
	testkit.CloseConn(t, appSU)
	testkit.RequireNoClients(t, su, app)

	// The database's owner copies it (no superuser needed).
	own := testkit.Connect(t, owner)
	testkit.MustExec(t, own, fmt.Sprintf("CREATE DATABASE %s_copy TEMPLATE %s", app, app))
	copyDB := app + "_copy"

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	alice = testkit.ConnectTo(t, testkit.Cluster, app, "alice")
	require.Equal(t, "succeeded", testkit.QueryOne[string](t, alice, "CALL lantern.wait_task($1, '1 min', NULL)", jobid))

	cp := testkit.ConnectTo(t, testkit.Cluster, copyDB, testkit.Superuser)
	require.Equal(t, "failed", testkit.QueryOne[string](t, cp, "CALL lantern.wait_task($1, '1 min', NULL)", jobid),
		"the copy's row ends without running")
	msg := testkit.QueryOne[string](t, cp, "SELECT error_message FROM lantern.tasks WHERE jobid = $1", jobid)
	require.Equal(t, copiedTaskSQLState, testkit.QueryOne[string](t, cp, "SELECT sqlstate FROM lantern.task_errors WHERE jobid = $1", jobid), msg)
	require.Contains(t, msg, "ERROR:  this task was submitted in another database")
	require.Contains(t, msg, fmt.Sprintf(`DETAIL:  The task belongs to database "%s"`, app))

	require.Equal(t, "failed", testkit.QueryOne[string](t, cp, "CALL lantern.wait_task($1, '1 min', NULL)", stale))
	require.Contains(t, testkit.QueryOne[string](t, cp, "SELECT error_message FROM lantern.tasks WHERE jobid = $1", stale),
		"ERROR:  this task was submitted in another database", "a copied 'running' row")

	trace := testkit.ReadTrace(t, app)
	require.Len(t, trace, 1, "the task ran once, in %s", app)
	require.Equal(t, app, trace[0].DB)
	require.Equal(t, "alice", trace[0].User)
	testkit.CloseConn(t, cp)
	require.Empty(t, testkit.ReadTrace(t, copyDB), "the task never ran in the copy")
}
