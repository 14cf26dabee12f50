package databases

import (
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// lantern_async.database, when set, is the one database served: the
// extension cannot be created anywhere else, and says why; the database
// named works as usual. (Unset, every database is served: the default of
// the shared cluster.)
func TestDatabaseAllowList(t *testing.T) {
	testkit.Begin(t)
	extra := testkit.StartExtraCluster(t, pgcluster.Options{Database: testkit.DBName})
	su := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
	require.Equal(t, testkit.DBName, testkit.QueryOne[string](t, su, "SHOW lantern_async.database"))
	testkit.MustExec(t, su, "CREATE DATABASE not_served")

	other := testkit.ConnectTo(t, extra, "not_served", testkit.Superuser)
	_, err := other.Exec(testkit.Ctx(t), "CREATE EXTENSION lantern_async")
	e := testkit.RequirePgError(t, err, "0A000", "CREATE EXTENSION outside lantern_async.database")
	require.Equal(t, `lantern_async can only be created in database "postgres"`, e.Message)
	require.Contains(t, e.Hint, "lantern_async.database")
	require.Equal(t, testkit.DBName, testkit.QueryOne[string](t, other, "SHOW lantern_async.database"),
		"set, it shows the database served wherever it is read")

	testkit.MustExec(t, su, "CREATE EXTENSION lantern_async")
	testkit.RequireSucceeded(t, su, testkit.Submit(t, su, "SELECT 1"))
}
