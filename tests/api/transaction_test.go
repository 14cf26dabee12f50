package api

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

func TestRolledBackSubmitNeverRuns(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "marker")

	tx, err := su.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	rolledBack := testkit.Submit(t, tx, testkit.MarkerInsert(marker, 1))
	require.NoError(t, tx.Rollback(testkit.Ctx(t)))

	// A later task that has finished makes the negative check meaningful:
	// the launcher has been through the queue since.
	later := testkit.Submit(t, su, testkit.MarkerInsert(marker, 2))
	require.Greater(t, later, rolledBack)
	testkit.RequireSucceeded(t, su, later)

	require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", rolledBack),
		"a rolled-back submission leaves no row")
	require.Equal(t, []int{2}, testkit.MarkerValues(t, marker), "the rolled-back task must never run")
}

func TestUncommittedSubmitNotRunBeforeCommit(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	other := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "marker")

	tx, err := su.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	inTx := testkit.Submit(t, tx, testkit.MarkerInsert(marker, 1))

	// Submitted later but committed first: it must run (the open
	// transaction does not block the queue) ...
	committed := testkit.Submit(t, other, testkit.MarkerInsert(marker, 2))
	testkit.RequireSucceeded(t, other, committed)

	// ... while the uncommitted one stays invisible and unexecuted.
	testkit.Never(t, time.Second, func() (bool, string) {
		var n, ran int
		err := other.QueryRow(context.Background(), fmt.Sprintf(
			"SELECT (SELECT count(*) FROM lantern.tasks WHERE jobid = $1), (SELECT count(*) FROM %s WHERE a = 1)", marker),
			inTx).Scan(&n, &ran)
		if err != nil {
			return true, "query error: " + err.Error()
		}
		return n != 0 || ran != 0, fmt.Sprintf("row visible=%d, marker rows=%d", n, ran)
	}, "uncommitted task visible to others or executed")

	var status *string
	require.NoError(t, tx.QueryRow(testkit.Ctx(t), "SELECT status FROM lantern.tasks WHERE jobid = $1", inTx).Scan(&status))
	require.Equal(t, "pending", testkit.Deref(status), "inside its transaction the task is still pending")

	require.NoError(t, tx.Commit(testkit.Ctx(t)))
	testkit.RequireSucceeded(t, other, inTx)
	require.Equal(t, []int{1, 2}, testkit.MarkerValues(t, marker))
}

// Several submissions in one transaction all run after COMMIT.
func TestSubmitSeveralInOneTransaction(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "marker")
	tx, err := su.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	var ids []int64
	for i := 1; i <= 3; i++ {
		ids = append(ids, testkit.Submit(t, tx, testkit.MarkerInsert(marker, i)))
	}
	require.NoError(t, tx.Commit(testkit.Ctx(t)))
	testkit.RequireSucceeded(t, su, ids...)
	require.Equal(t, []int{1, 2, 3}, testkit.MarkerValues(t, marker))
}

// A submission in an implicit transaction that a later statement of the
// same query string aborts never runs either.
func TestSubmitInFailedTransactionNeverRuns(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.MarkerTable(t, su, "marker")
	// One simple-protocol message: an implicit transaction that the error
	// in the second statement rolls back.
	_, err := su.Exec(testkit.Ctx(t), fmt.Sprintf("SELECT lantern.async_task(%s); SELECT 1/0", testkit.Lit(testkit.MarkerInsert(marker, 1))))
	require.Equal(t, "22012", testkit.PgCode(err), "want division by zero, got %v", err)

	testkit.RequireSucceeded(t, su, testkit.Submit(t, su, testkit.MarkerInsert(marker, 2)))
	require.Equal(t, 0, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE query = $1", testkit.MarkerInsert(marker, 1)))
	require.Equal(t, []int{2}, testkit.MarkerValues(t, marker))
}
