package dependencies

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// refusal is the error of a submit refused for naming jobid, with the
// jobid taken out of the message so that two refusals compare.
func refusal(t *testing.T, err error, jobid int64) pgconn.PgError {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "a server error for naming task %d, got %v", jobid, err)
	e := *pgErr
	require.Equal(t, fmt.Sprintf("task %d named in depends_on does not exist", jobid), e.Message)
	e.Message = strings.Replace(e.Message, fmt.Sprint(jobid), "N", 1)
	e.Position, e.InternalPosition, e.Where, e.File, e.Line, e.Routine = 0, 0, "", "", 0, ""
	return e
}

// TestOnlyVisibleTasks: a role may name only tasks it can see in
// lantern.tasks. Another role's task gets the very error a jobid that
// does not exist gets, so that a refusal tells nothing; a superuser may
// name anybody's.
func TestOnlyVisibleTasks(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice, bob := testkit.Connect(t, "alice"), testkit.Connect(t, "bob")
	lock := testkit.HoldAdvisoryLock(t)
	alices := testkit.Submit(t, alice, lock.WaitSQL())
	none := testkit.QueryOne[int64](t, su, "SELECT max(jobid) + 1000000 FROM lantern.tasks")

	others := refusal(t, dependsError(t, bob, []int64{alices}), alices)
	missing := refusal(t, dependsError(t, bob, []int64{none}), none)
	require.Equal(t, missing, others, "naming another role's task and a jobid that does not exist")
	require.Equal(t, "22023", others.Code)
	require.Equal(t, "A task can depend only on tasks its role can see in lantern.tasks, in this database.", others.Detail)
	// One visible among them changes nothing.
	bobs := testkit.Submit(t, bob, "SELECT 1")
	refusal(t, dependsError(t, bob, []int64{bobs, alices}), alices)

	a := submitAfter(t, su, "SELECT 1", alices)
	lock.Release(t)
	testkit.RequireSucceeded(t, su, alices, a)
}

// TestRevokedSelectSeesNothing: a role whose SELECT on lantern.tasks was
// revoked sees no task, its own neither: the same refusal.
func TestRevokedSelectSeesNothing(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	// The test roles are granted SELECT of their own; a new role has PUBLIC's.
	carol := testkit.Connect(t, testkit.NewTempRole(t, su, "deps_revoked"))
	own := testkit.Submit(t, carol, "SELECT 1")
	testkit.MustExec(t, su, "REVOKE SELECT ON lantern.tasks FROM PUBLIC")
	t.Cleanup(func() { testkit.CleanupExec(t, "GRANT SELECT ON lantern.tasks TO PUBLIC") })
	refusal(t, dependsError(t, carol, []int64{own}), own)
	testkit.MustExec(t, su, "GRANT SELECT ON lantern.tasks TO PUBLIC")
	testkit.RequireSucceeded(t, carol, submitAfter(t, carol, "SELECT 1", own))
}

// TestCopiedTaskNotNameable: a task whose owner row names another
// database (a database copy's inherited rows) cannot be named, even by
// its own role.
func TestCopiedTaskNotNameable(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	own := testkit.Submit(t, alice, "SELECT 1")
	testkit.RequireSucceeded(t, alice, own)
	testkit.MustExec(t, su, `UPDATE lantern.task_owners SET datid = (SELECT oid FROM pg_database WHERE datname = 'template1')
		WHERE jobid = $1`, own)
	refusal(t, dependsError(t, alice, []int64{own}), own)
	refusal(t, dependsError(t, su, []int64{own}), own)
}

// TestDependsOnArgument: NULL and an empty array are no dependencies; a
// NULL element is refused (22004); the elements of an array of any shape
// count once each.
func TestDependsOnArgument(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	bob := testkit.Connect(t, "bob")
	b := testkit.Submit(t, bob, "SELECT 1")
	for _, deps := range []string{"NULL", "'{}'"} {
		id := testkit.QueryOne[int64](t, bob, "SELECT lantern.async_task('SELECT 1', depends_on => "+deps+")")
		require.False(t, testkit.QueryOne[bool](t, su, "SELECT depends FROM lantern.task_owners WHERE jobid = $1", id), deps)
		testkit.RequireSucceeded(t, bob, id)
	}
	var pgErr *pgconn.PgError
	err := dependsError(t, bob, fmt.Sprintf("{%d,NULL}", b))
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "22004", pgErr.Code)
	require.Equal(t, "depends_on must not contain null", pgErr.Message)

	id := testkit.QueryOne[int64](t, bob, "SELECT lantern.async_task('SELECT 1', depends_on => $1::bigint[])",
		fmt.Sprintf("{{%d,%d},{%d,%d}}", b, b, b, b))
	require.Equal(t, []int64{b}, testkit.QueryOne[[]int64](t, su,
		"SELECT array_agg(depends_on) FROM lantern.task_dependencies WHERE jobid = $1", id))
	testkit.RequireSucceeded(t, bob, id)
	require.Equal(t, 1, testkit.QueryOne[int](t, bob,
		"SELECT count(*)::int FROM lantern.task_dependencies WHERE jobid = $1", id), "a role reads its own task's dependencies")
	require.Equal(t, 0, testkit.QueryOne[int](t, testkit.Connect(t, "alice"),
		"SELECT count(*)::int FROM lantern.task_dependencies WHERE jobid = $1", id), "and not another role's")
}
