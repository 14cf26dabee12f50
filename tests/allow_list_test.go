package tests

import (
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// lantern_async.database, when set, is the one database served: the
// extension cannot be created anywhere else, and says why; the database
// named works as usual. (Unset, every database is served: the default of
// the shared cluster.)
func TestDatabaseAllowList(t *testing.T) {
	begin(t)
	extra := startExtraCluster(t, pgcluster.Options{Database: dbName})
	su := connectTo(t, extra, dbName, superuser)
	require.Equal(t, dbName, queryOne[string](t, su, "SHOW lantern_async.database"))
	mustExec(t, su, "CREATE DATABASE not_served")

	other := connectTo(t, extra, "not_served", superuser)
	_, err := other.Exec(ctx(t), "CREATE EXTENSION lantern_async")
	e := requirePgError(t, err, "0A000", "CREATE EXTENSION outside lantern_async.database")
	require.Equal(t, `lantern_async can only be created in database "postgres"`, e.Message)
	require.Contains(t, e.Hint, "lantern_async.database")
	require.Equal(t, dbName, queryOne[string](t, other, "SHOW lantern_async.database"),
		"set, it shows the database served wherever it is read")

	mustExec(t, su, "CREATE EXTENSION lantern_async")
	requireSucceeded(t, su, submit(t, su, "SELECT 1"))
}
