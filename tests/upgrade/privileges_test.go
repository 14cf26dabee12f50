package upgrade

import (
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// TestUpgradeKeepsWhoMaySubmit: the update to 0.5.0 replaces the three
// async_task overloads with one function. An administrator who had
// revoked EXECUTE on async_task(text) from PUBLIC and granted it to one
// role finds the same on the new function: the update grants nothing to
// PUBLIC that the administrator had taken away.
func TestUpgradeKeepsWhoMaySubmit(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	testkit.ResetExtensionAtEnd(t)
	testkit.DropExtension(t, su)
	testkit.MustExec(t, su, "CREATE EXTENSION lantern_async VERSION '0.4.0'")
	require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), su))
	testkit.MustExec(t, su, "REVOKE EXECUTE ON FUNCTION lantern.async_task(text) FROM PUBLIC")
	testkit.MustExec(t, su, "GRANT EXECUTE ON FUNCTION lantern.async_task(text) TO alice")

	testkit.MustExec(t, su, "ALTER EXTENSION lantern_async UPDATE")

	alice, bob := testkit.Connect(t, "alice"), testkit.Connect(t, "bob")
	testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))
	_, err := bob.Exec(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1')")
	testkit.RequirePgError(t, err, "42501", "bob, to whom EXECUTE was never granted, after the update")
	require.Equal(t, []string{"alice", "postgres"}, testkit.QueryAll[string](t, su, `
		SELECT coalesce(r.rolname, 'PUBLIC') FROM pg_proc p, aclexplode(p.proacl) a
		LEFT JOIN pg_roles r ON r.oid = a.grantee
		WHERE p.oid = 'lantern.async_task(text, text, interval, timestamptz, integer, bigint[])'::regprocedure
		ORDER BY 1`), "who may execute the new function")
}
