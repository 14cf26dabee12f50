package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Upgrades: a database that has 0.1.0, with tasks queued, reaches through
// ALTER EXTENSION lantern_async UPDATE the same state as a fresh install,
// and its queued tasks then run as the roles that queued them.

// extensionFingerprint describes everything the extension defines: its
// namespace and what the extension itself depends on in pg_depend,
// members, columns and defaults, constraints, indexes, policies (roles,
// USING and WITH CHECK), privileges, row-level security, storage options,
// comments, functions (symbol, language, kind, volatility, strictness,
// parallel safety, SECURITY DEFINER, proconfig, argument and return types),
// view bodies, and the bindings: what each of its objects and sub-objects
// refers to in pg_depend, and every operator and function its stored
// expressions call, by qualified identity (not OID; the OIDs in the names
// of toast tables and foreign-key triggers are masked). Run it with
// search_path = pg_catalog, pg_temp (see bindings_test.go's ownedObjectsCTE).
var extensionFingerprint = ownedObjectsCTE + `,
rels AS (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'lantern'::regnamespace)
SELECT string_agg(regexp_replace(line, '(pg_toast_|RI_ConstraintTrigger_[ac]_)[0-9]+', '\1N', 'g'), E'\n' ORDER BY line) FROM (
  SELECT 'member ' || pg_describe_object(m.classid, m.objid, 0) FROM members m
  UNION ALL SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
      || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
      || ' collation=' || coalesce(a.attcollation::regcollation::text, '')
    FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE a.attrelid IN (SELECT oid FROM rels) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'lantern'::regnamespace
  UNION ALL SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid IN (SELECT oid FROM rels)
  UNION ALL SELECT 'policy ' || polrelid::regclass || ' ' || polname || ' ' || polcmd::text || ' permissive=' || polpermissive
      || ' roles=' || polroles::regrole[]::text || ' using=' || coalesce(pg_get_expr(polqual, polrelid), '')
      || ' check=' || coalesce(pg_get_expr(polwithcheck, polrelid), '')
    FROM pg_policy WHERE polrelid IN (SELECT oid FROM rels)
  UNION ALL SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
      || ' rls=' || c.relrowsecurity || ' force=' || c.relforcerowsecurity
      || ' options=' || coalesce(c.reloptions::text, '') || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
    FROM pg_class c WHERE c.oid IN (SELECT oid FROM rels)
  UNION ALL SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid)
    FROM pg_class c WHERE c.oid IN (SELECT oid FROM rels) AND c.relkind = 'v'
  UNION ALL SELECT 'function ' || p.oid::regprocedure || ' acl=' || coalesce(p.proacl::text, '')
      || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
      || ' language=' || l.lanname || ' kind=' || p.prokind::text || ' src=' || p.prosrc || ' bin=' || coalesce(p.probin, '')
      || ' body=' || coalesce(pg_get_function_sqlbody(p.oid), '')
      || ' volatile=' || p.provolatile::text || ' strict=' || p.proisstrict || ' parallel=' || p.proparallel::text
      || ' secdef=' || p.prosecdef || ' leakproof=' || p.proleakproof || ' config=' || coalesce(p.proconfig::text, '')
      || ' args=' || pg_get_function_arguments(p.oid) || ' returns=' || coalesce(pg_get_function_result(p.oid), '')
      || ' owner=' || p.proowner::regrole
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.pronamespace = 'lantern'::regnamespace
  UNION ALL SELECT 'schema acl=' || coalesce(nspacl::text, '') || ' owner=' || nspowner::regrole FROM pg_namespace WHERE nspname = 'lantern'
  UNION ALL SELECT 'extension schema=' || e.extnamespace::regnamespace || ' relocatable=' || e.extrelocatable FROM pg_extension e WHERE e.extname = 'lantern_async'
  UNION ALL SELECT 'extension depends -> ' || d.deptype::text || ' ' || r.type || ' ' || coalesce(r.identity, '')
    FROM pg_depend d JOIN pg_extension e ON d.classid = 'pg_extension'::regclass AND d.objid = e.oid AND e.extname = 'lantern_async'
    CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) r
  UNION ALL SELECT 'depends ' || pg_describe_object(d.classid, d.objid, d.objsubid) || ' -> ' || d.deptype::text || ' '
      || r.type || ' ' || coalesce(r.identity, '')
    FROM pg_depend d JOIN owned o ON o.classid = d.classid AND o.objid = d.objid
    CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) r
  UNION ALL SELECT 'calls ' || pg_describe_object(t.classid, t.objid, 0) || ' ' || t.field || ' ' || r.type || ' ' || r.identity
    FROM tree_refs t CROSS JOIN LATERAL pg_identify_object(t.refclassid, t.refobjid, 0) r
) lines(line)`

// currentVersion is lantern_async.control's default_version.
const currentVersion = "0.4.0"

func fingerprint(t *testing.T, su *pgx.Conn) string {
	t.Helper()
	mustExec(t, su, "SET search_path = pg_catalog, pg_temp")
	defer mustExec(t, su, "RESET search_path")
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

// TestUpgradeFrom020: a task queued under 0.2.0, still pending at the
// update (behind blockers that hold every slot), runs after ALTER
// EXTENSION UPDATE; the result is exactly a fresh install, and what 0.3.0
// added (wait_task) works on it.
func TestUpgradeFrom020(t *testing.T) {
	upgradeWithQueuedTask(t, "0.2.0")
}

// TestUpgradeFrom030: the same from 0.3.0, whose task_progress bound its
// arithmetic by search_path (issue 17): the update re-binds it.
func TestUpgradeFrom030(t *testing.T) {
	upgradeWithQueuedTask(t, "0.3.0")
}

func upgradeWithQueuedTask(t *testing.T, from string) {
	begin(t)
	su := connect(t, superuser)
	resetExtensionAtEnd(t)
	fresh := fingerprint(t, su)
	marker := markerTable(t, su, "upgrade"+strings.ReplaceAll(from, ".", ""), "alice")

	dropExtension(t, su)
	mustExec(t, su, fmt.Sprintf("CREATE EXTENSION lantern_async VERSION %s", lit(from)))
	require.NoError(t, grantExtensionAccess(ctx(t), su))
	alice := connect(t, "alice")
	lock := holdAdvisoryLock(t)
	blockers := lock.blockWorkers(t, su, cluster.MaxWorkers())
	queued := submit(t, alice, markerInsert(marker, 1))
	require.Equal(t, "pending", deref(getTask(t, su, queued).Status), "queued behind the blockers")

	mustExec(t, su, "ALTER EXTENSION lantern_async UPDATE")
	require.Equal(t, currentVersion, queryOne[string](t, su, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	require.Equal(t, fresh, fingerprint(t, su), "an updated %s must be exactly a fresh %s", from, currentVersion)
	require.Equal(t, "pending", deref(getTask(t, su, queued).Status), "still queued when the update committed")

	lock.release(t)
	requireSucceeded(t, su, blockers...)
	require.Equal(t, "succeeded", queryOne[string](t, alice, "CALL lantern.wait_task($1, '1 min', NULL)", queued))
	after := submit(t, alice, markerInsert(marker, 2))
	require.Equal(t, "succeeded", queryOne[string](t, alice, "CALL lantern.wait_task($1, '1 min', NULL)", after))
	require.Equal(t, []int{1, 2}, markerValues(t, marker))
}
