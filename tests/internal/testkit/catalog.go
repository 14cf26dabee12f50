package testkit

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// OwnedObjectsCTE is every object of the extension: its members, and what
// depends on them internally or automatically (columns' defaults,
// constraints, indexes, rewrite rules of views, policies, triggers, row
// types, toast tables). Run with search_path = pg_catalog, pg_temp.
const OwnedObjectsCTE = `
WITH RECURSIVE ext AS (SELECT oid FROM pg_extension WHERE extname = 'lantern_async'),
members AS (
  SELECT d.classid, d.objid FROM pg_depend d, ext
  WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
owned(classid, objid) AS (
  SELECT classid, objid FROM members
  UNION
  SELECT d.classid, d.objid FROM pg_depend d JOIN owned o ON d.refclassid = o.classid AND d.refobjid = o.objid
  WHERE d.deptype IN ('a', 'i')),
member_schemas AS (
  SELECT DISTINCT i.schema FROM members m, pg_identify_object(m.classid, m.objid, 0) i WHERE i.schema IS NOT NULL),
trees(classid, objid, tree) AS (
  SELECT 'pg_rewrite'::regclass, r.oid, coalesce(r.ev_action::text, '') || coalesce(r.ev_qual::text, '')
    FROM pg_rewrite r JOIN owned o ON o.classid = 'pg_rewrite'::regclass AND o.objid = r.oid
  UNION ALL SELECT 'pg_attrdef'::regclass, a.oid, a.adbin::text
    FROM pg_attrdef a JOIN owned o ON o.classid = 'pg_attrdef'::regclass AND o.objid = a.oid
  UNION ALL SELECT 'pg_class'::regclass, i.indexrelid, coalesce(i.indexprs::text, '') || coalesce(i.indpred::text, '')
    FROM pg_index i JOIN owned o ON o.classid = 'pg_class'::regclass AND o.objid = i.indexrelid
  UNION ALL SELECT 'pg_policy'::regclass, p.oid, coalesce(p.polqual::text, '') || coalesce(p.polwithcheck::text, '')
    FROM pg_policy p JOIN owned o ON o.classid = 'pg_policy'::regclass AND o.objid = p.oid
  UNION ALL SELECT 'pg_constraint'::regclass, c.oid, coalesce(c.conbin::text, '')
    FROM pg_constraint c JOIN owned o ON o.classid = 'pg_constraint'::regclass AND o.objid = c.oid
  UNION ALL SELECT 'pg_trigger'::regclass, g.oid, coalesce(g.tgqual::text, '')
    FROM pg_trigger g JOIN owned o ON o.classid = 'pg_trigger'::regclass AND o.objid = g.oid
  UNION ALL SELECT 'pg_proc'::regclass, f.oid, coalesce(f.prosqlbody::text, '') || coalesce(f.proargdefaults::text, '')
    FROM pg_proc f JOIN owned o ON o.classid = 'pg_proc'::regclass AND o.objid = f.oid
  UNION ALL SELECT 'pg_type'::regclass, y.oid, coalesce(y.typdefaultbin::text, '')
    FROM pg_type y JOIN owned o ON o.classid = 'pg_type'::regclass AND o.objid = y.oid),
-- Every operator and function a stored expression calls, by OID: on 15 and
-- later a reference to a built-in (pinned) object is not in pg_depend.
tree_refs AS (
  SELECT t.classid, t.objid,
         CASE WHEN m[1] IN ('opno', 'sortop', 'eqop') THEN 'pg_operator'::regclass ELSE 'pg_proc'::regclass END AS refclassid,
         m[2]::oid AS refobjid, m[1] AS field
  FROM trees t, regexp_matches(t.tree, ':(opno|opfuncid|funcid|aggfnoid|winfnoid|sortop|eqop) (\d+)', 'g') m
  WHERE m[2] <> '0')`

// ExtensionFingerprint describes everything the extension defines: its
// namespace and what the extension itself depends on in pg_depend,
// members, columns and defaults, constraints, indexes, policies (roles,
// USING and WITH CHECK), privileges, row-level security, storage options,
// comments, functions (symbol, language, kind, volatility, strictness,
// parallel safety, SECURITY DEFINER, proconfig, argument and return types),
// view bodies, and the bindings: what each of its objects and sub-objects
// refers to in pg_depend, and every operator and function its stored
// expressions call, by qualified identity (not OID; the OIDs in the names
// of toast tables and foreign-key triggers are masked). Run it with
// search_path = pg_catalog, pg_temp (see OwnedObjectsCTE).
var ExtensionFingerprint = OwnedObjectsCTE + `,
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

// CurrentVersion is lantern_async.control's default_version.
const CurrentVersion = "0.6.0"

func Fingerprint(t *testing.T, su *pgx.Conn) string {
	t.Helper()
	MustExec(t, su, "SET search_path = pg_catalog, pg_temp")
	defer MustExec(t, su, "RESET search_path")
	return QueryOne[string](t, su, ExtensionFingerprint)
}
