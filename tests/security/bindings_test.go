package security

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Bindings: no object of the extension binds to an operator, function or
// type outside pg_catalog and the extension itself, whatever a database
// owner planted beforehand. An install script runs with
// search_path = <the creator's first schema>, pg_temp: an operator without
// an exact match in pg_catalog (numeric * bigint) binds to an exact one
// planted in that schema, and the superuser who reads the view then runs
// the planter's code.

// bindingViolationsSQL lists what an object of the extension refers to
// (pg_depend, and the operators and functions in its stored expressions)
// that is neither in pg_catalog, nor the extension's, nor its schema.
const bindingViolationsSQL = testkit.OwnedObjectsCTE + `
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) || ' -> ' || r.type || ' ' || r.identity
FROM pg_depend d JOIN owned o ON o.classid = d.classid AND o.objid = d.objid
CROSS JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid) r
WHERE d.deptype <> 'e'
  AND NOT EXISTS (SELECT FROM owned x WHERE x.classid = d.refclassid AND x.objid = d.refobjid)
  AND r.schema IS DISTINCT FROM 'pg_catalog'
  AND NOT (r.type = 'schema' AND r.identity IN (SELECT schema FROM member_schemas))
UNION ALL
SELECT pg_describe_object(t.classid, t.objid, 0) || ' calls ' || r.type || ' ' || r.identity
FROM tree_refs t CROSS JOIN LATERAL pg_identify_object(t.refclassid, t.refobjid, 0) r
WHERE r.schema IS DISTINCT FROM 'pg_catalog'
  AND NOT EXISTS (SELECT FROM owned x WHERE x.classid = t.refclassid AND x.objid = t.refobjid)
ORDER BY 1`

// unpinnedFunctionsSQL lists the extension's SQL and PL/pgSQL functions
// that neither pin search_path nor have a BEGIN ATOMIC body.
const unpinnedFunctionsSQL = testkit.OwnedObjectsCTE + `
SELECT p.oid::regprocedure::text FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
JOIN pg_language l ON l.oid = p.prolang
WHERE l.lanname IN ('sql', 'plpgsql') AND p.prosqlbody IS NULL
  AND NOT coalesce(p.proconfig::text[] && ARRAY['search_path=pg_catalog, pg_temp', 'search_path=pg_catalog,pg_temp'], false)
ORDER BY 1`

// usedOperatorsSQL: the operators the stored expressions call (name, left
// and right type); usedFunctionsSQL: the functions of pg_catalog they call.
const usedOperatorsSQL = testkit.OwnedObjectsCTE + `
SELECT DISTINCT o.oprname::text || '|' || coalesce(o.oprleft::regtype::text, '-') || '|' || coalesce(o.oprright::regtype::text, '-')
FROM tree_refs t JOIN pg_operator o ON t.refclassid = 'pg_operator'::regclass AND o.oid = t.refobjid ORDER BY 1`

const usedFunctionsSQL = testkit.OwnedObjectsCTE + `
SELECT DISTINCT p.proname::text
FROM tree_refs t JOIN pg_proc p ON t.refclassid = 'pg_proc'::regclass AND p.oid = t.refobjid AND t.field <> 'opfuncid'
WHERE p.pronamespace = 'pg_catalog'::regnamespace ORDER BY 1`

// The planted table: every operator symbol and function name the
// extension's SQL uses must be here (TestBindingsCoverTheSQL), so that a new
// view cannot reintroduce the hole unseen. Operators are planted for every
// pair of plantTypes that pg_catalog's operator accepts (returning what it
// returns, so the install goes through as it would in a real attack);
// functions of up to two arguments for every combination of plantTypes,
// and every overload of pg_catalog with its exact signature.
var (
	plantSymbols = []string{"=", "<>", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "||", "~~", "~"}
	plantTypes   = []string{"smallint", "integer", "bigint", "numeric", "real", "double precision",
		"text", "character varying", "character", "name", "oid", "boolean",
		"timestamp with time zone", "timestamp without time zone", "interval", "regclass"}
	// Argument types of the one-argument function plants only.
	plantArrayTypes = []string{"bigint[]", "integer[]", "text[]", "oid[]"}
	plantFunctions  = []string{"now", "clock_timestamp", "round", "nextval", "current_setting", "current_database",
		"format", "pg_get_userbyid", "aclexplode", "text", "numeric", "count", "min", "max",
		// CURRENT_USER is a call of pg_catalog."current_user"() from 16 on
		"current_user", "session_user",
		// what the lantern-async command (cmd/lantern-async) calls
		"unnest", "cardinality", "extract",
		// the update to 0.5.0 (copying who may call async_task)
		"quote_ident"}
	// Keywords that look like functions: the parser never calls a function
	// by these names, but a planter would try.
	plantKeywordFunctions = []string{"coalesce", "nullif", "greatest", "least"}
)

func sqlArray(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = testkit.Lit(s)
	}
	return "ARRAY[" + strings.Join(quoted, ", ") + "]::text[]"
}

// plantSQL is what the database owner runs before the extension is
// created: the trap (a call bumps public.trap_calls, a sequence, so that
// even a call whose transaction rolls back is seen, records itself in
// public.trap_log, and makes the owner superuser when a superuser called
// it) and the look-alikes in public and in the superuser's "$user" schema.
// public.planted lists what could be created.
func plantSQL(owner string) string {
	return fmt.Sprintf(`
CREATE SEQUENCE public.trap_calls;
CREATE TABLE public.trap_log (what text, by_role name);
CREATE TABLE public.planted (schema text, kind text, name text, signature text);
GRANT USAGE, UPDATE ON SEQUENCE public.trap_calls TO PUBLIC;
GRANT INSERT ON public.trap_log TO PUBLIC;
CREATE FUNCTION public.caught(label text) RETURNS void LANGUAGE plpgsql AS $c$
BEGIN
    PERFORM pg_catalog.nextval('public.trap_calls');
    INSERT INTO public.trap_log VALUES (label, CURRENT_USER);
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
        BEGIN
            EXECUTE 'ALTER ROLE %[1]s SUPERUSER';
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END IF;
END $c$;
CREATE SCHEMA %[2]s;
GRANT USAGE ON SCHEMA %[2]s TO PUBLIC;

DO $plant$
DECLARE
    schemas text[] := ARRAY['public', %[3]s];
    syms text[] := %[4]s;
    types text[] := %[5]s;
    funcs text[] := %[6]s;
    keywords text[] := %[7]s;
    arrays text[] := %[8]s;
    sch text; s text; a text; b text; f text; rt text; fn text; n int := 0; k int;
    p record;
    argl text; callargs text; nulls text; srf bool;
BEGIN
    FOREACH sch IN ARRAY schemas LOOP
        n := 0;
        FOREACH s IN ARRAY syms LOOP
            n := n + 1;
            FOREACH a IN ARRAY types LOOP
                -- prefix operators
                IF s IN ('-', '+') THEN
                    BEGIN
                        EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(OPERATOR(pg_catalog.%%s) NULL::%%s)::text', s, a) INTO rt;
                        fn := pg_catalog.format('%%I.trap_prefix_%%s', sch, n);
                        EXECUTE pg_catalog.format($f$CREATE FUNCTION %%s(%%s) RETURNS %%s LANGUAGE plpgsql AS $b$BEGIN PERFORM public.caught(%%L); RETURN OPERATOR(pg_catalog.%%s) $1; END$b$$f$,
                                                  fn, a, rt, pg_catalog.format('%%s.%%s %%s', sch, s, a), s);
                        EXECUTE pg_catalog.format('CREATE OPERATOR %%I.%%s (RIGHTARG = %%s, FUNCTION = %%s)', sch, s, a, fn);
                        INSERT INTO public.planted VALUES (sch, 'operator', s, '- ' || a);
                    EXCEPTION WHEN OTHERS THEN NULL;
                    END;
                END IF;
                FOREACH b IN ARRAY types LOOP
                    BEGIN
                        EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(NULL::%%s OPERATOR(pg_catalog.%%s) NULL::%%s)::text', a, s, b) INTO rt;
                        fn := pg_catalog.format('%%I.trap_op_%%s', sch, n);
                        EXECUTE pg_catalog.format($f$CREATE FUNCTION %%s(%%s, %%s) RETURNS %%s LANGUAGE plpgsql AS $b$BEGIN PERFORM public.caught(%%L); RETURN $1 OPERATOR(pg_catalog.%%s) $2; END$b$$f$,
                                                  fn, a, b, rt, pg_catalog.format('%%s.%%s(%%s, %%s)', sch, s, a, b), s);
                        EXECUTE pg_catalog.format('CREATE OPERATOR %%I.%%s (LEFTARG = %%s, RIGHTARG = %%s, FUNCTION = %%s)', sch, s, a, b, fn);
                        INSERT INTO public.planted VALUES (sch, 'operator', s, a || ' ' || b);
                    EXCEPTION WHEN OTHERS THEN NULL;
                    END;
                END LOOP;
            END LOOP;
        END LOOP;

        FOREACH f IN ARRAY funcs LOOP
            -- every overload of pg_catalog's, with its exact signature
            FOR p IN SELECT pr.oid, pr.proretset, pr.pronargs FROM pg_catalog.pg_proc pr
                     WHERE pr.proname OPERATOR(pg_catalog.=) f AND pr.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
                       AND pr.prokind OPERATOR(pg_catalog.=) 'f' LOOP
                BEGIN
                    SELECT pg_catalog.string_agg('$' OPERATOR(pg_catalog.||) i, ', ') INTO callargs FROM pg_catalog.generate_series(1, p.pronargs) i;
                    EXECUTE pg_catalog.format($f$CREATE FUNCTION %%I.%%I(%%s) RETURNS %%s LANGUAGE plpgsql AS $b$BEGIN PERFORM public.caught(%%L); %%s END$b$$f$,
                        sch, f, pg_catalog.pg_get_function_arguments(p.oid), pg_catalog.pg_get_function_result(p.oid),
                        pg_catalog.format('%%s.%%s(%%s)', sch, f, pg_catalog.pg_get_function_identity_arguments(p.oid)),
                        CASE WHEN p.proretset THEN pg_catalog.format('RETURN QUERY SELECT * FROM pg_catalog.%%I(%%s);', f, coalesce(callargs, ''))
                             ELSE pg_catalog.format('RETURN pg_catalog.%%I(%%s);', f, coalesce(callargs, '')) END);
                    INSERT INTO public.planted VALUES (sch, 'function', f, pg_catalog.pg_get_function_identity_arguments(p.oid));
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
            END LOOP;
            -- and for every combination of the common types, up to two arguments
            FOR k IN 0..2 LOOP
                FOREACH a IN ARRAY CASE k WHEN 0 THEN ARRAY['']::text[] WHEN 1 THEN types OPERATOR(pg_catalog.||) arrays ELSE types END LOOP
                    FOREACH b IN ARRAY CASE WHEN k OPERATOR(pg_catalog.<) 2 THEN ARRAY['']::text[] ELSE types END LOOP
                        argl := CASE k WHEN 0 THEN '' WHEN 1 THEN a ELSE a || ', ' || b END;
                        nulls := CASE k WHEN 0 THEN '' WHEN 1 THEN 'NULL::' || a ELSE 'NULL::' || a || ', NULL::' || b END;
                        BEGIN
                            EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(pg_catalog.%%I(%%s))::text', f, nulls) INTO rt;
                            srf := rt IS NULL;
                            IF srf THEN
                                -- a set-returning function gave no row: its type from a view's column
                                EXECUTE pg_catalog.format('CREATE TEMP VIEW trap_probe AS SELECT pg_catalog.%%I(%%s) AS x', f, nulls);
                                SELECT pg_catalog.format_type(t.atttypid, t.atttypmod) INTO rt FROM pg_catalog.pg_attribute t
                                WHERE t.attrelid OPERATOR(pg_catalog.=) 'pg_temp.trap_probe'::pg_catalog.regclass AND t.attnum OPERATOR(pg_catalog.=) 1;
                                DROP VIEW pg_temp.trap_probe;
                            END IF;
                            CONTINUE WHEN rt IS NULL OR rt IN ('record', 'void');
                            EXECUTE pg_catalog.format($f$CREATE FUNCTION %%I.%%I(%%s) RETURNS %%s%%s LANGUAGE plpgsql AS $b$BEGIN PERFORM public.caught(%%L); %%s pg_catalog.%%I(%%s); END$b$$f$,
                                sch, f, argl, CASE WHEN srf THEN 'SETOF ' ELSE '' END, rt, pg_catalog.format('%%s.%%s(%%s)', sch, f, argl),
                                CASE WHEN srf THEN 'RETURN QUERY SELECT * FROM' ELSE 'RETURN' END, f,
                                CASE k WHEN 0 THEN '' WHEN 1 THEN '$1' ELSE '$1, $2' END);
                            INSERT INTO public.planted VALUES (sch, 'function', f, argl);
                        EXCEPTION WHEN OTHERS THEN NULL;
                        END;
                    END LOOP;
                END LOOP;
            END LOOP;
        END LOOP;

        FOREACH f IN ARRAY keywords LOOP
            FOREACH a IN ARRAY types LOOP
                BEGIN
                    EXECUTE pg_catalog.format($f$CREATE FUNCTION %%I.%%I(%%s, %%s) RETURNS %%s LANGUAGE plpgsql AS $b$BEGIN PERFORM public.caught(%%L); RETURN $1; END$b$$f$,
                        sch, f, a, a, a, pg_catalog.format('%%s.%%s(%%s, %%s)', sch, f, a, a));
                    INSERT INTO public.planted VALUES (sch, 'function', f, a || ', ' || a);
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
            END LOOP;
        END LOOP;
    END LOOP;
END
$plant$;
-- The plants' own definitions may have used one another: start counting now.
SELECT pg_catalog.setval('public.trap_calls', 1, false);
TRUNCATE public.trap_log;`, owner, testkit.Superuser, testkit.Lit(testkit.Superuser),
		sqlArray(plantSymbols), sqlArray(plantTypes), sqlArray(plantFunctions), sqlArray(plantKeywordFunctions),
		sqlArray(plantArrayTypes))
}

// catalogConn connects to db as the superuser with search_path pinned to
// pg_catalog, so that the checks themselves call nothing planted.
func catalogConn(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	conn := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
	testkit.MustExec(t, conn, "SET search_path = pg_catalog, pg_temp")
	return conn
}

// requireBoundSafely asserts the mechanical checks on db's extension.
func requireBoundSafely(t *testing.T, conn *pgx.Conn, where string) {
	t.Helper()
	require.Empty(t, testkit.QueryAll[string](t, conn, bindingViolationsSQL),
		"%s: objects of the extension bound to something outside pg_catalog and the extension", where)
	require.Empty(t, testkit.QueryAll[string](t, conn, unpinnedFunctionsSQL),
		"%s: SQL or PL/pgSQL functions of the extension without a pinned search_path or BEGIN ATOMIC body", where)
}

// TestBindingsFreshInstall: the mechanical checks on the shared database's
// fresh install.
func TestBindingsFreshInstall(t *testing.T) {
	testkit.Begin(t)
	conn := catalogConn(t, testkit.DBName)
	requireBoundSafely(t, conn, "fresh install")
	// The checks see something: the view calls round(), the defaults now().
	require.Contains(t, testkit.QueryAll[string](t, conn, usedFunctionsSQL), "round")
	require.Contains(t, testkit.QueryAll[string](t, conn, usedOperatorsSQL), "*|numeric|numeric")
}

// scriptsOfCurrentVersion reads the install script of the current version
// and the upgrade script into it.
func scriptsOfCurrentVersion(t *testing.T) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "sql", "lantern_async--*"+testkit.CurrentVersion+".sql"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(paths), 2, "install and upgrade scripts of %s", testkit.CurrentVersion)
	var all strings.Builder
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		all.Write(b)
	}
	return all.String()
}

// TestBindingsCoverTheSQL: the planted table covers every operator and
// function the extension's SQL uses, in its stored expressions (on a
// clean install) and in its scripts (DO blocks run as the installer).
func TestBindingsCoverTheSQL(t *testing.T) {
	testkit.Begin(t)
	conn := catalogConn(t, testkit.DBName)
	for _, op := range testkit.QueryAll[string](t, conn, usedOperatorsSQL) {
		parts := strings.Split(op, "|")
		require.Contains(t, plantSymbols, parts[0], "operator %s is used but not planted by TestBindingsHostileDatabase", op)
		for _, typ := range parts[1:] {
			if typ != "-" {
				require.Contains(t, plantTypes, typ, "operator %s takes a type plantTypes lacks", op)
			}
		}
	}
	for _, f := range testkit.QueryAll[string](t, conn, usedFunctionsSQL) {
		require.Contains(t, plantFunctions, f, "function %s is used but not planted by TestBindingsHostileDatabase", f)
	}
	script := regexp.MustCompile(`--[^\n]*`).ReplaceAllString(scriptsOfCurrentVersion(t), "")
	for _, m := range regexp.MustCompile(`OPERATOR\(pg_catalog\.([^)]+)\)`).FindAllStringSubmatch(script, -1) {
		require.Contains(t, plantSymbols, m[1], "the scripts use operator %s, which is not planted", m[1])
	}
	for _, m := range regexp.MustCompile(`pg_catalog\.([a-z_]+)\s*\(`).FindAllStringSubmatch(script, -1) {
		require.Contains(t, plantFunctions, m[1], "the scripts call pg_catalog.%s, which is not planted", m[1])
	}
}

// TestBindingsHostileDatabase: a database whose (non-superuser) owner
// planted look-alikes of every operator and function the SQL uses, in
// public and in the superuser's "$user" schema, gets the extension from a
// superuser: fresh, or an older version then ALTER EXTENSION UPDATE. Nothing
// of the extension binds to the plants, every update ends with the
// fingerprint of the fresh install, and using the extension (reading
// task_progress while a task runs, cancel, wait, a task's claim and
// outcome) never calls one.
func TestBindingsHostileDatabase(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	mallory := testkit.NewTempRole(t, su, "mallory")
	template := testkit.Ident(t, testkit.Uniq("hostile_tpl"))
	testkit.DropDatabaseAtEnd(t, template)
	testkit.MustExec(t, su, fmt.Sprintf("CREATE DATABASE %s OWNER %s", template, mallory))
	func() {
		m := testkit.ConnectTo(t, testkit.Cluster, template, mallory)
		defer testkit.CloseConn(t, m)
		testkit.MustExec(t, m, plantSQL(mallory))
		// The planting did plant: every symbol and function of the table, in public.
		for _, s := range plantSymbols {
			require.True(t, testkit.QueryOne[bool](t, m, "SELECT EXISTS (SELECT FROM public.planted WHERE schema = 'public' AND kind = 'operator' AND name = $1)", s), "planted operator %s", s)
		}
		for _, f := range append(slices.Clone(plantFunctions), plantKeywordFunctions...) {
			require.True(t, testkit.QueryOne[bool](t, m, "SELECT EXISTS (SELECT FROM public.planted WHERE schema = 'public' AND kind = 'function' AND name = $1)", f), "planted function %s", f)
		}
		require.True(t, testkit.QueryOne[bool](t, m, "SELECT EXISTS (SELECT FROM public.planted WHERE signature = 'numeric bigint' AND name = '*')"),
			"the reported numeric * bigint is among the plants")
		t.Logf("planted: %s", testkit.QueryOne[string](t, m,
			"SELECT string_agg(kind || 's in ' || schema || ': ' || n::text, ', ') FROM (SELECT schema, kind, count(*) n FROM public.planted GROUP BY 1, 2) x"))
	}()

	var fresh, freshDB string
	parent := t
	for _, from := range []string{"", "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"} {
		name := "fresh"
		if from != "" {
			name = "from_" + strings.ReplaceAll(from, ".", "")
		}
		ok := t.Run(name, func(t *testing.T) {
			db, fp := hostileInstall(t, parent, su, template, mallory, from)
			if from == "" {
				fresh, freshDB = fp, db
			} else {
				require.Equal(t, fresh, fp, "an updated %s must be exactly a fresh %s, bindings included", from, testkit.CurrentVersion)
			}
		})
		if !ok && from == "" {
			return
		}
	}

	// The lantern-async command, run by the administrator there.
	t.Run("cli", func(t *testing.T) {
		bin := testkit.BuildCLI(t)
		m := testkit.ConnectTo(t, testkit.Cluster, freshDB, mallory)
		jobid := testkit.Submit(t, m, "SELECT 1")
		for _, args := range [][]string{{"wait", fmt.Sprint(jobid)}, {"list"}, {"list", "--status", "succeeded"}, {"show", fmt.Sprint(jobid)},
			{"submit", "--wait", "--at", "+0s", "SELECT 1"}, {"submit", "--wait", "--at", "yesterday", "SELECT 1"},
			{"submit", "--wait", "--retries", "1", failOnceQuery(t, m)}} {
			c, cancel := context.WithTimeout(context.Background(), testkit.CLITimeout)
			out, err := exec.CommandContext(c, bin, append([]string{"--dsn", testkit.Cluster.DSN(freshDB, testkit.Superuser)}, args...)...).CombinedOutput()
			cancel()
			require.NoError(t, err, "lantern-async %v:\n%s", args, out)
		}
		requireNotCaught(t, catalogConn(t, freshDB), mallory, "the lantern-async command")
	})
}

// hostileInstall copies the planted template, installs the extension there
// (version from, then ALTER EXTENSION UPDATE; "" for the current one), runs
// the checks and returns the database (dropped when parent ends) and the
// extension's fingerprint.
func hostileInstall(t, parent *testing.T, su *pgx.Conn, template, mallory, from string) (string, string) {
	db := testkit.Ident(t, testkit.Uniq("hostile"))
	testkit.DropDatabaseAtEnd(parent, db) // the fresh one is used again after its subtest

	testkit.MustExec(t, su, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s OWNER %s", db, template, mallory))

	// The administrator's session: the default search_path ("$user", public).
	admin := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
	if from == "" {
		testkit.MustExec(t, admin, "CREATE EXTENSION lantern_async")
	} else {
		testkit.MustExec(t, admin, fmt.Sprintf("CREATE EXTENSION lantern_async VERSION %s", testkit.Lit(from)))
		testkit.MustExec(t, admin, "ALTER EXTENSION lantern_async UPDATE")
	}
	cat := catalogConn(t, db)
	require.Equal(t, testkit.CurrentVersion, testkit.QueryOne[string](t, cat, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	requireBoundSafely(t, cat, "hostile database")
	requireNotCaught(t, cat, mallory, "installing")

	// Use it: a task of the owner's runs, the administrator reads its
	// progress, cancels it and waits for it; another task runs to its end.
	m := testkit.ConnectTo(t, testkit.Cluster, db, mallory)
	sleeper := testkit.Submit(t, m, "SELECT pg_catalog.pg_sleep(60)")
	testkit.RequirePoll(t, testkit.WaitTimeout, "the sleeper running", testkit.WhileConnected(cat, func() (bool, string) {
		st, err := testkit.QueryRows[string](cat, "SELECT status FROM lantern.tasks WHERE jobid = $1", sleeper)
		return err == nil && len(st) == 1 && st[0] == "running", fmt.Sprintf("%v %v", st, err)
	}))
	// (The test's own SQL in this database must use no operator pg_catalog
	// lacks an exact match for: it would call the plants itself.)
	rows := testkit.QueryAll[int64](t, admin, "SELECT jobid FROM lantern.task_progress WHERE percent IS NULL AND elapsed IS NOT NULL")
	require.Equal(t, []int64{sleeper}, rows, "task_progress as the administrator")
	require.True(t, testkit.QueryOne[bool](t, admin, "SELECT lantern.cancel_task($1)", sleeper))
	require.Equal(t, "canceled", testkit.QueryOne[string](t, admin, "CALL lantern.wait_task($1, '30 s', NULL)", sleeper))
	done := testkit.Submit(t, m, "SELECT 1")
	require.Equal(t, "succeeded", testkit.QueryOne[string](t, m, "CALL lantern.wait_task($1, '30 s', NULL)", done))
	requireNotCaught(t, cat, mallory, "using")
	return db, testkit.QueryOne[string](t, cat, testkit.ExtensionFingerprint)
}

// requireNotCaught: no plant was ever called, by anyone (the sequence
// counts calls whose transaction rolled back too), and the owner is no
// superuser.
func requireNotCaught(t *testing.T, cat *pgx.Conn, mallory, when string) {
	t.Helper()
	require.False(t, testkit.QueryOne[bool](t, cat, "SELECT is_called FROM public.trap_calls"),
		"%s called a plant: %v", when, testkit.QueryAll[string](t, cat, "SELECT what || ' by ' || by_role FROM public.trap_log"))
	require.False(t, testkit.QueryOne[bool](t, cat, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", mallory),
		"%s made the database owner a superuser", when)
}

// failOnceQuery is a task that fails its first attempt with a
// serialization failure (40001) and succeeds on its second: a retry, its
// attempts' rows and its requeue run in the hostile database.
func failOnceQuery(t *testing.T, conn *pgx.Conn) string {
	seq := testkit.Uniq("fail_once")
	testkit.MustExec(t, conn, "CREATE SEQUENCE "+seq)
	return fmt.Sprintf(`DO $$ BEGIN IF pg_catalog.nextval('%s') OPERATOR(pg_catalog.=) 1 THEN RAISE EXCEPTION 'once' USING ERRCODE = '40001'; END IF; END $$`, seq)
}
