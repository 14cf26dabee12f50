package tests

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Upgrades: a database that has 0.1.0, with tasks queued, reaches through
// ALTER EXTENSION lantern_async UPDATE the same state as a fresh install,
// and its queued tasks then run as the roles that queued them.

// extensionFingerprint describes everything the extension defines in
// schema lantern: members, columns and defaults, constraints, indexes,
// policies, privileges, row-level security, storage options and comments.
const extensionFingerprint = `
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'lantern_async'),
rels AS (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'lantern'::regnamespace)
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
    FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
  UNION ALL SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
      || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
    FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'lantern'::regnamespace
  UNION ALL SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid IN (SELECT oid FROM rels)
  UNION ALL SELECT 'policy ' || polrelid::regclass || ' ' || polname || ' ' || polcmd::text || ' ' || pg_get_expr(polqual, polrelid)
    FROM pg_policy WHERE polrelid IN (SELECT oid FROM rels)
  UNION ALL SELECT 'relation ' || c.oid::regclass || ' acl=' || coalesce(c.relacl::text, '') || ' rls=' || c.relrowsecurity
      || ' options=' || coalesce(c.reloptions::text, '') || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
    FROM pg_class c WHERE c.oid IN (SELECT oid FROM rels)
  UNION ALL SELECT 'function ' || p.oid::regprocedure || ' acl=' || coalesce(p.proacl::text, '')
      || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
    FROM pg_proc p WHERE p.pronamespace = 'lantern'::regnamespace
  UNION ALL SELECT 'schema acl=' || coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'lantern'
) lines(line)`

// currentVersion is lantern_async.control's default_version.
const currentVersion = "0.3.0"

func fingerprint(t *testing.T, su *pgx.Conn) string {
	t.Helper()
	return queryOne[string](t, su, extensionFingerprint)
}

// queueAs010 inserts pending tasks the way 0.1.0's async_task did: the
// submitter's name in username, no owner row (0.1.0 had none).
func queueAs010(t *testing.T, su *pgx.Conn, role string, queries ...string) []int64 {
	t.Helper()
	var ids []int64
	for _, q := range queries {
		ids = append(ids, queryOne[int64](t, su,
			"INSERT INTO lantern.tasks (query, username, status) VALUES ($1, $2, 'pending') RETURNING jobid", q, role))
	}
	return ids
}

func TestUpgradeFrom010RunsQueuedTasks(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	resetExtensionAtEnd(t)
	fresh := fingerprint(t, su)
	marker := markerTable(t, su, "upgrade", "alice")

	dropExtension(t, su)
	mustExec(t, su, "CREATE EXTENSION lantern_async VERSION '0.1.0'")
	require.NoError(t, grantExtensionAccess(ctx(t), su))
	ids := queueAs010(t, su, "alice", markerInsert(marker, 1), markerInsert(marker, 2))
	gone := queueAs010(t, su, "no_such_role_any_more", "SELECT 1")

	// Until the update the library refuses to work with the old tables, and says why.
	alice := connect(t, "alice")
	_, err := alice.Exec(ctx(t), "SELECT lantern.async_task('SELECT 1')")
	pgErr := requirePgError(t, err, "55000", "async_task before ALTER EXTENSION UPDATE")
	require.Contains(t, pgErr.Hint, "ALTER EXTENSION lantern_async UPDATE")

	mustExec(t, su, "ALTER EXTENSION lantern_async UPDATE")
	require.Equal(t, currentVersion, queryOne[string](t, su, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	require.Equal(t, fresh, fingerprint(t, su), "an updated 0.1.0 must be exactly a fresh "+currentVersion)

	requireSucceeded(t, alice, ids...) // visible to alice: owned by her OID now
	require.Equal(t, []int{1, 2}, markerValues(t, marker))
	msg := requireFailedWithSQLState(t, su, gone[0], "42501")
	require.Contains(t, msg, "not submitted through lantern.async_task()", "a 0.1.0 task whose role is gone never runs")
	requireSucceeded(t, alice, submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (3)", marker)))
}

// TestUpgradeFrom020: tasks queued under 0.2.0 run after ALTER EXTENSION
// UPDATE, the result is exactly a fresh install, and what 0.3.0 adds
// (wait_task, task_progress) works on it.
func TestUpgradeFrom020(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	resetExtensionAtEnd(t)
	fresh := fingerprint(t, su)
	marker := markerTable(t, su, "upgrade020", "alice")

	dropExtension(t, su)
	mustExec(t, su, "CREATE EXTENSION lantern_async VERSION '0.2.0'")
	require.NoError(t, grantExtensionAccess(ctx(t), su))
	alice := connect(t, "alice")
	before := submit(t, alice, markerInsert(marker, 1))
	requireSucceeded(t, alice, before)

	mustExec(t, su, "ALTER EXTENSION lantern_async UPDATE")
	require.Equal(t, currentVersion, queryOne[string](t, su, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	require.Equal(t, fresh, fingerprint(t, su), "an updated 0.2.0 must be exactly a fresh "+currentVersion)

	after := submit(t, alice, markerInsert(marker, 2))
	require.Equal(t, "succeeded", queryOne[string](t, alice, "CALL lantern.wait_task($1, '1 min', NULL)", after))
	require.Equal(t, []int{1, 2}, markerValues(t, marker))
}
