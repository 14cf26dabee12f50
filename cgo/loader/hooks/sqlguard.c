/*
 * sqlguard.c - the extension's own statements use only its own tables
 *
 * The bookkeeping's SQL is text: the tables are named in it, with names
 * tables/catalog.c builds from their OIDs.  Between that and the moment
 * PostgreSQL resolves the names, a name can come to mean something else: an ALTER
 * SCHEMA lantern RENAME commits, another role creates a schema lantern of
 * its own, and a saved plan is analyzed again from its text (every schema
 * change makes PostgreSQL re-analyze every saved plan).  Resolved as the
 * bootstrap superuser, such a name would run the other role's code with
 * those rights.
 *
 * So tables/catalog.c writes a comment with the OID before each name it
 * builds (LA_SQLGUARD_MARK), and this post-parse-analysis hook checks every
 * statement whose text holds one, each time it is analyzed (prepared, or
 * re-analyzed for a saved plan): every relation it uses must be one so
 * marked or one of pg_catalog, and every function and operator must be
 * pg_catalog's.  Anything else fails the statement then, before it is
 * rewritten, planned (planning may run an immutable function) or run.  A
 * statement without the mark is left alone; one that carries it can only
 * lose rights by it.
 *
 * The install and update scripts are SQL of ours too, and they name schema
 * lantern (the released ones never change): after the schema is renamed,
 * ALTER EXTENSION UPDATE would run them, as a superuser, against whatever
 * schema has that name now.  The utility hook (dbguard.c) refuses that.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_operator.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "hooks/la_hooks.h"
#include "tables/la_tables.h"

/* More distinct tables than any statement of ours names: the rest are refused. */
#define LA_SQLGUARD_MAX_RELATIONS 8

typedef struct LaSqlGuard
{
	int			nrelids;
	Oid			relids[LA_SQLGUARD_MAX_RELATIONS];
} LaSqlGuard;

static post_parse_analyze_hook_type la_prev_post_parse_analyze = NULL;

/* The OIDs the marks in text name; false when it has none. */
static bool
la_sqlguard_read_marks(const char *text, LaSqlGuard *guard)
{
	const char *p = text;
	bool		marked = false;

	guard->nrelids = 0;
	while ((p = strstr(p, LA_SQLGUARD_MARK)) != NULL)
	{
		Oid			relid;
		bool		known = false;

		p += strlen(LA_SQLGUARD_MARK);
		relid = (Oid) strtoul(p, NULL, 10);
		marked = true;
		for (int i = 0; i < guard->nrelids; i++)
			known |= guard->relids[i] == relid;
		if (!known && OidIsValid(relid) && guard->nrelids < LA_SQLGUARD_MAX_RELATIONS)
			guard->relids[guard->nrelids++] = relid;
	}
	return marked;
}

static void
la_sqlguard_refuse(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("lantern_async refused a statement of its own that uses %s", what),
			 errdetail("The extension's statements use only its own tables, found by OID, and the objects of pg_catalog; "
					   "a name in the statement resolved to something else, as when the extension's schema is renamed "
					   "while the statement is being prepared."),
			 errhint("Run the command again.")));
}

static void
la_sqlguard_relation(Oid relid, const LaSqlGuard *guard)
{
	for (int i = 0; i < guard->nrelids; i++)
		if (guard->relids[i] == relid)
			return;
	if (get_rel_namespace(relid) == PG_CATALOG_NAMESPACE)
		return;
	la_sqlguard_refuse(psprintf("relation \"%s\"",
								quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
														   get_rel_name(relid))));
}

static void
la_sqlguard_function(Oid funcid)
{
	if (get_func_namespace(funcid) != PG_CATALOG_NAMESPACE)
		la_sqlguard_refuse(psprintf("function %s", format_procedure_qualified(funcid)));
}

static void
la_sqlguard_operator(Oid opno)
{
	HeapTuple	tuple = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	Oid			nspid = InvalidOid;

	if (HeapTupleIsValid(tuple))
	{
		nspid = ((Form_pg_operator) GETSTRUCT(tuple))->oprnamespace;
		ReleaseSysCache(tuple);
	}
	if (nspid != PG_CATALOG_NAMESPACE)
		la_sqlguard_refuse(psprintf("operator %s", format_operator_qualified(opno)));
}

/* Every level of the query: range tables, sublinks, CTEs, expressions. */
static bool
la_sqlguard_walker(Node *node, void *context)
{
	const LaSqlGuard *guard = context;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, la_sqlguard_walker, context,
								 QTW_EXAMINE_RTES_BEFORE);
	if (IsA(node, RangeTblEntry))
	{
		if (((RangeTblEntry *) node)->rtekind == RTE_RELATION)
			la_sqlguard_relation(((RangeTblEntry *) node)->relid, guard);
		return false;			/* range_table_walker goes on inside it */
	}
	if (IsA(node, FuncExpr))
		la_sqlguard_function(((FuncExpr *) node)->funcid);
	else if (IsA(node, Aggref))
		la_sqlguard_function(((Aggref *) node)->aggfnoid);
	else if (IsA(node, WindowFunc))
		la_sqlguard_function(((WindowFunc *) node)->winfnoid);
	else if (IsA(node, OpExpr) || IsA(node, DistinctExpr) || IsA(node, NullIfExpr))
		la_sqlguard_operator(((OpExpr *) node)->opno);
	else if (IsA(node, ScalarArrayOpExpr))
		la_sqlguard_operator(((ScalarArrayOpExpr *) node)->opno);
	else if (IsA(node, RowCompareExpr))
	{
		ListCell   *lc;

		foreach(lc, ((RowCompareExpr *) node)->opnos)
			la_sqlguard_operator(lfirst_oid(lc));
	}
	return expression_tree_walker(node, la_sqlguard_walker, context);
}

static void
la_sqlguard_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	LaSqlGuard	guard;

	if (la_prev_post_parse_analyze)
		la_prev_post_parse_analyze(pstate, query, jstate);
	if (pstate->p_sourcetext != NULL && la_sqlguard_read_marks(pstate->p_sourcetext, &guard))
		(void) la_sqlguard_walker((Node *) query, &guard);
}

void
la_sqlguard_install_hook(void)
{
	la_prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = la_sqlguard_post_parse_analyze;
}

/* Before ALTER EXTENSION lantern_async UPDATE runs: only in schema lantern. */
void
la_sqlguard_check_utility(Node *stmt)
{
	Oid			nspid;
	char	   *current;

	if (!IsA(stmt, AlterExtensionStmt) ||
		strcmp(((AlterExtensionStmt *) stmt)->extname, LA_EXTENSION_NAME) != 0)
		return;
	nspid = la_catalog_schema();
	current = OidIsValid(nspid) ? get_namespace_name(nspid) : NULL;
	if (current == NULL || strcmp(current, LA_SCHEMA_NAME) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"%s\" can be updated only in schema \"%s\"", LA_EXTENSION_NAME, LA_SCHEMA_NAME),
			 errdetail("Its schema is named \"%s\" now, and the update scripts name schema \"%s\": "
					   "they would change whatever schema has that name.", current, LA_SCHEMA_NAME),
			 errhint("Rename schema \"%s\" back to \"%s\" (after renaming or dropping any other schema of that name), "
					 "update the extension, then rename it again.", current, LA_SCHEMA_NAME)));
}
