package security

import (
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// The extension's namespace (pg_extension.extnamespace) is a schema no
// ordinary role can drop. Before 0.4.0 the control file named none, so it
// was the installing superuser's first search_path schema: a schema named
// after that superuser ("$user") that another role owned, or public, which
// a database owner owns on 15 and later (pg_database_owner). The extension
// depends on its namespace, so that role's DROP SCHEMA ... CASCADE or DROP
// OWNED ... CASCADE dropped the extension, every role's tasks with it.
// Since 0.4.0 the install script ends by moving the extension to
// pg_catalog, which nobody can drop, and so does the update to 0.4.0.
//
// Each case runs in a database of its own, dropped at the end.

// extensionNamespace is the schema pg_extension names for the extension,
// "" without the extension.
func extensionNamespace(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	return testkit.QueryOne[string](t, conn, `
		SELECT coalesce((SELECT extnamespace::regnamespace::text FROM pg_catalog.pg_extension
		                 WHERE extname = 'lantern_async'), '')`)
}

// namespaceScene is a database where the superuser installs the extension
// and attacker may drop the schema that was first on the superuser's
// search_path at the time.
type namespaceScene struct {
	db, attacker, schema string
	su, alice            *pgx.Conn
	jobid                int64 // alice's task, succeeded before the attack
}

// newSchemaOwnerScene: attacker (a plain role with CREATE on the database)
// owns a schema named after the installing superuser, first on its
// search_path ("$user", public).
func newSchemaOwnerScene(t *testing.T) *namespaceScene {
	t.Helper()
	su0 := testkit.Connect(t, testkit.Superuser)
	eve := testkit.NewTempRole(t, su0, "eve")
	db := testkit.NewDatabase(t, su0, "extnsp")
	testkit.MustExec(t, su0, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", db, eve))
	testkit.MustExec(t, testkit.ConnectTo(t, testkit.Cluster, db, eve), fmt.Sprintf("CREATE SCHEMA %s", testkit.Superuser))
	return &namespaceScene{db: db, attacker: eve, schema: testkit.Superuser, su: testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)}
}

// newDatabaseOwnerScene: attacker is the database's owner, a plain role;
// public (owned by pg_database_owner) is first on the superuser's path.
func newDatabaseOwnerScene(t *testing.T) *namespaceScene {
	t.Helper()
	su0 := testkit.Connect(t, testkit.Superuser)
	mallory := testkit.NewTempRole(t, su0, "mallory")
	db := testkit.NewDatabase(t, su0, "extnspown")
	testkit.MustExec(t, su0, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", db, mallory))
	return &namespaceScene{db: db, attacker: mallory, schema: "public", su: testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)}
}

// install runs CREATE EXTENSION as the superuser, with its default
// search_path (VERSION version, then ALTER EXTENSION UPDATE, unless
// version is empty).
func (s *namespaceScene) install(t *testing.T, version string) {
	t.Helper()
	require.Equal(t, s.schema, testkit.QueryOne[string](t, s.su, "SELECT current_schema()"),
		"the attacker's schema is the installer's first schema")
	if version == "" {
		testkit.MustExec(t, s.su, "CREATE EXTENSION lantern_async")
	} else {
		testkit.MustExec(t, s.su, "CREATE EXTENSION lantern_async VERSION "+testkit.Lit(version))
		if version < "0.4.0" { // the versions before the move to pg_catalog
			requireOldNamespace(t, s.su, s.schema)
		} else {
			require.Equal(t, "pg_catalog", extensionNamespace(t, s.su), "pg_extension.extnamespace of %s", version)
		}
		testkit.MustExec(t, s.su, "ALTER EXTENSION lantern_async UPDATE")
		require.Equal(t, testkit.CurrentVersion, testkit.QueryOne[string](t, s.su,
			"SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	}
	require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), s.su))
	require.Equal(t, testkit.Fingerprint(t, testkit.Connect(t, testkit.Superuser)), testkit.Fingerprint(t, s.su),
		"the install (%s) is exactly a fresh %s (as in the shared database)", version, testkit.CurrentVersion)
	s.alice = testkit.ConnectTo(t, testkit.Cluster, s.db, "alice")
	s.jobid = testkit.Submit(t, s.alice, "SELECT 1")
	testkit.RequireSucceeded(t, s.alice, s.jobid)
	require.Equal(t, "pg_catalog", extensionNamespace(t, s.su), "pg_extension.extnamespace")
	require.Equal(t, 0, testkit.QueryOne[int](t, s.su, `
		SELECT count(*)::int FROM pg_depend d JOIN pg_extension e ON d.objid = e.oid
		WHERE e.extname = 'lantern_async' AND d.classid = 'pg_extension'::regclass
		  AND d.refclassid = 'pg_namespace'::regclass`),
		"the extension depends on no schema (a dependency on pg_catalog, pinned, is not recorded)")
}

// requireOldNamespace asserts that an old version's install is what it
// was before 0.4.0: its namespace the installer's first schema.
func requireOldNamespace(t *testing.T, su *pgx.Conn, schema string) {
	t.Helper()
	require.Equal(t, schema, extensionNamespace(t, su), "the namespace CREATE EXTENSION gave the old version")
}

// requireIntact asserts that the extension, its namespace and alice's task
// survived what the attacker did, and that a new task still runs.
func (s *namespaceScene) requireIntact(t *testing.T, what string) {
	t.Helper()
	require.Equal(t, "pg_catalog", extensionNamespace(t, s.su), "the extension and its namespace after %s", what)
	require.Equal(t, "succeeded", testkit.QueryOne[string](t, s.su,
		"SELECT coalesce((SELECT status FROM lantern.tasks WHERE jobid = $1), 'gone')", s.jobid),
		"alice's task after %s", what)
	testkit.RequireSucceeded(t, s.alice, testkit.Submit(t, s.alice, "SELECT 2"))
}

// attack runs what the attacker can do to the installer's first schema:
// DROP OWNED BY itself CASCADE (rolled back, so that the next one finds
// the schema) and DROP SCHEMA ... CASCADE. Either dropped the extension
// before 0.4.0.
func (s *namespaceScene) attack(t *testing.T) {
	t.Helper()
	atk := testkit.ConnectTo(t, testkit.Cluster, s.db, s.attacker)
	testkit.MustExec(t, atk, "BEGIN")
	// The owner of a database owns nothing in it but the database: its
	// public belongs to pg_database_owner, whose objects DROP OWNED refuses.
	if _, err := atk.Exec(testkit.Ctx(t), fmt.Sprintf("DROP OWNED BY %s CASCADE", s.attacker)); err != nil {
		t.Logf("DROP OWNED BY %s CASCADE: %v", s.attacker, err)
	} else {
		require.Equal(t, 1, testkit.QueryOne[int](t, atk,
			"SELECT count(*)::int FROM pg_catalog.pg_extension WHERE extname = 'lantern_async'"),
			"the extension, seen in %s's transaction after DROP OWNED BY %[1]s CASCADE", s.attacker)
	}
	testkit.MustExec(t, atk, "ROLLBACK")
	s.requireIntact(t, "DROP OWNED BY "+s.attacker+" CASCADE, rolled back")

	testkit.MustExec(t, atk, fmt.Sprintf("DROP SCHEMA %s CASCADE", s.schema))
	s.requireIntact(t, "DROP SCHEMA "+s.schema+" CASCADE")
}

func TestExtensionNamespaceNotDroppable(t *testing.T) {
	scenes := []struct {
		name string
		new  func(t *testing.T) *namespaceScene
	}{
		{"schema named after the installer", newSchemaOwnerScene},
		{"public of a database owner", newDatabaseOwnerScene},
	}
	for _, sc := range scenes {
		for _, version := range []string{"", "0.1.0", "0.2.0", "0.3.0", "0.4.0"} {
			name := sc.name + "/fresh"
			if version != "" {
				name = sc.name + "/from " + version
			}
			t.Run(name, func(t *testing.T) {
				testkit.Begin(t)
				s := sc.new(t)
				s.install(t, version)
				s.attack(t)
			})
		}
	}
}

// TestExtensionSchemaClause: CREATE EXTENSION ... SCHEMA names the
// schema the script runs in; the extension ends in pg_catalog all the
// same, and that schema's owner can drop the schema without CASCADE.
func TestExtensionSchemaClause(t *testing.T) {
	testkit.Begin(t)
	s := newSchemaOwnerScene(t)
	testkit.MustExec(t, s.su, fmt.Sprintf("CREATE EXTENSION lantern_async SCHEMA %s", s.schema))
	require.Equal(t, "pg_catalog", extensionNamespace(t, s.su), "pg_extension.extnamespace")
	testkit.MustExec(t, testkit.ConnectTo(t, testkit.Cluster, s.db, s.attacker), fmt.Sprintf("DROP SCHEMA %s", s.schema))
	require.Equal(t, "pg_catalog", extensionNamespace(t, s.su), "the extension after DROP SCHEMA %s", s.schema)
}
