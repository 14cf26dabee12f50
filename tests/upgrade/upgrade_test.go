package upgrade

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Upgrades: a database that has 0.1.0, with tasks queued, reaches through
// ALTER EXTENSION lantern_async UPDATE the same state as a fresh install,
// and its queued tasks then run as the roles that queued them.

// queueAs010 inserts pending tasks the way 0.1.0's async_task did: the
// submitter's name in username, no owner row (0.1.0 had none).
func queueAs010(t *testing.T, su *pgx.Conn, role string, queries ...string) []int64 {
	t.Helper()
	var ids []int64
	for _, q := range queries {
		ids = append(ids, testkit.QueryOne[int64](t, su,
			"INSERT INTO lantern.tasks (query, username, status) VALUES ($1, $2, 'pending') RETURNING jobid", q, role))
	}
	return ids
}

func TestUpgradeFrom010RunsQueuedTasks(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.ResetExtensionAtEnd(t)
	fresh := testkit.Fingerprint(t, su)
	marker := testkit.MarkerTable(t, su, "upgrade", "alice")

	testkit.DropExtension(t, su)
	testkit.MustExec(t, su, "CREATE EXTENSION lantern_async VERSION '0.1.0'")
	require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), su))
	ids := queueAs010(t, su, "alice", testkit.MarkerInsert(marker, 1), testkit.MarkerInsert(marker, 2))
	gone := queueAs010(t, su, "no_such_role_any_more", "SELECT 1")

	// Until the update the library refuses to work with the old tables, and says why.
	alice := testkit.Connect(t, "alice")
	_, err := alice.Exec(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1')")
	pgErr := testkit.RequirePgError(t, err, "55000", "async_task before ALTER EXTENSION UPDATE")
	require.Contains(t, pgErr.Hint, "ALTER EXTENSION lantern_async UPDATE")

	testkit.MustExec(t, su, "ALTER EXTENSION lantern_async UPDATE")
	require.Equal(t, testkit.CurrentVersion, testkit.QueryOne[string](t, su, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	require.Equal(t, fresh, testkit.Fingerprint(t, su), "an updated 0.1.0 must be exactly a fresh "+testkit.CurrentVersion)

	testkit.RequireSucceeded(t, alice, ids...) // visible to alice: owned by her OID now
	require.Equal(t, []int{1, 2}, testkit.MarkerValues(t, marker))
	msg := testkit.RequireFailedWithSQLState(t, su, gone[0], "42501")
	require.Contains(t, msg, "not submitted through lantern.async_task()", "a 0.1.0 task whose role is gone never runs")
	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (3)", marker)))
}

// TestUpgradeFrom020: a task queued under 0.2.0, still pending at the
// update (behind blockers that hold every slot), runs after ALTER
// EXTENSION UPDATE; the result is exactly a fresh install, and what 0.3.0
// added (wait_task) works on it.
func TestUpgradeFrom020(t *testing.T) {
	upgradeWithQueuedTask(t, "0.2.0")
}

// TestUpgradeFrom030: the same from 0.3.0, whose task_progress bound its
// arithmetic by search_path: the update re-binds it.
func TestUpgradeFrom030(t *testing.T) {
	upgradeWithQueuedTask(t, "0.3.0")
}

// TestUpgradeFrom040: the same from 0.4.0, whose three async_task
// overloads become one with defaults, and whose pending task enters the
// claims' queue (task_owners.due) at its submit time.
func TestUpgradeFrom040(t *testing.T) {
	upgradeWithQueuedTask(t, "0.4.0")
}

// TestUpgradeFrom050: the same from 0.5.0, whose task_owners (the claims'
// queue) autovacuum left to a fraction of the history's size.
func TestUpgradeFrom050(t *testing.T) {
	upgradeWithQueuedTask(t, "0.5.0")
}

func upgradeWithQueuedTask(t *testing.T, from string) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.ResetExtensionAtEnd(t)
	fresh := testkit.Fingerprint(t, su)
	marker := testkit.MarkerTable(t, su, "upgrade"+strings.ReplaceAll(from, ".", ""), "alice")

	testkit.DropExtension(t, su)
	testkit.MustExec(t, su, fmt.Sprintf("CREATE EXTENSION lantern_async VERSION %s", testkit.Lit(from)))
	require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), su))
	alice := testkit.Connect(t, "alice")
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	queued := testkit.Submit(t, alice, testkit.MarkerInsert(marker, 1))
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, queued).Status), "queued behind the blockers")

	testkit.MustExec(t, su, "ALTER EXTENSION lantern_async UPDATE")
	require.Equal(t, testkit.CurrentVersion, testkit.QueryOne[string](t, su, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	require.Equal(t, fresh, testkit.Fingerprint(t, su), "an updated %s must be exactly a fresh %s", from, testkit.CurrentVersion)
	require.Equal(t, "pending", testkit.Deref(testkit.GetTask(t, su, queued).Status), "still queued when the update committed")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
	require.Equal(t, "succeeded", testkit.QueryOne[string](t, alice, "CALL lantern.wait_task($1, '1 min', NULL)", queued))
	after := testkit.Submit(t, alice, testkit.MarkerInsert(marker, 2))
	require.Equal(t, "succeeded", testkit.QueryOne[string](t, alice, "CALL lantern.wait_task($1, '1 min', NULL)", after))
	require.Equal(t, []int{1, 2}, testkit.MarkerValues(t, marker))
}
