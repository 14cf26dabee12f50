package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRolledBackSubmitNeverRuns(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	marker := markerTable(t, su, "marker")

	tx, err := su.Begin(ctx(t))
	require.NoError(t, err)
	rolledBack := submit(t, tx, markerInsert(marker, 1))
	require.NoError(t, tx.Rollback(ctx(t)))

	// A later task that has finished makes the negative check meaningful:
	// the launcher has been through the queue since.
	later := submit(t, su, markerInsert(marker, 2))
	require.Greater(t, later, rolledBack)
	requireSucceeded(t, su, later)

	require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", rolledBack),
		"a rolled-back submission leaves no row")
	require.Equal(t, []int{2}, markerValues(t, marker), "the rolled-back task must never run")
}

func TestUncommittedSubmitNotRunBeforeCommit(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	other := connect(t, superuser)
	marker := markerTable(t, su, "marker")

	tx, err := su.Begin(ctx(t))
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	inTx := submit(t, tx, markerInsert(marker, 1))

	// Submitted later but committed first: it must run (the open
	// transaction does not block the queue) ...
	committed := submit(t, other, markerInsert(marker, 2))
	requireSucceeded(t, other, committed)

	// ... while the uncommitted one stays invisible and unexecuted.
	never(t, time.Second, func() (bool, string) {
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
	require.NoError(t, tx.QueryRow(ctx(t), "SELECT status FROM lantern.tasks WHERE jobid = $1", inTx).Scan(&status))
	require.Equal(t, "pending", deref(status), "inside its transaction the task is still pending")

	require.NoError(t, tx.Commit(ctx(t)))
	requireSucceeded(t, other, inTx)
	require.Equal(t, []int{1, 2}, markerValues(t, marker))
}

// Several submissions in one transaction all run after COMMIT.
func TestSubmitSeveralInOneTransaction(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	marker := markerTable(t, su, "marker")
	tx, err := su.Begin(ctx(t))
	require.NoError(t, err)
	var ids []int64
	for i := 1; i <= 3; i++ {
		ids = append(ids, submit(t, tx, markerInsert(marker, i)))
	}
	require.NoError(t, tx.Commit(ctx(t)))
	requireSucceeded(t, su, ids...)
	require.Equal(t, []int{1, 2, 3}, markerValues(t, marker))
}

// A submission in an implicit transaction that a later statement of the
// same query string aborts never runs either.
func TestSubmitInFailedTransactionNeverRuns(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	marker := markerTable(t, su, "marker")
	// One simple-protocol message: an implicit transaction that the error
	// in the second statement rolls back.
	_, err := su.Exec(ctx(t), fmt.Sprintf("SELECT lantern.async_task(%s); SELECT 1/0", lit(markerInsert(marker, 1))))
	require.Equal(t, "22012", pgCode(err), "want division by zero, got %v", err)

	requireSucceeded(t, su, submit(t, su, markerInsert(marker, 2)))
	require.Equal(t, 0, queryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE query = $1", markerInsert(marker, 1)))
	require.Equal(t, []int{2}, markerValues(t, marker))
}
