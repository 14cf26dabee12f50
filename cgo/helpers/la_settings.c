/*
 * la_settings.c - every task runs with its role's and database's settings
 * as they are when it starts, as a new session would
 *
 * PostgreSQL applies ALTER ROLE / ALTER DATABASE ... SET (the rows of
 * pg_db_role_setting) once, when a session logs in (process_settings in
 * postinit.c).  A worker runs many tasks in one session, so a change an
 * administrator made since it logged in would never reach them, however
 * long the worker stays busy.  So the worker keeps the rows that apply to
 * it as it applied them, and each claim compares them with the catalog;
 * when they differ, the claim rolls back (the task stays pending), the
 * worker exits, and the launcher starts a new worker: a new session, which
 * logs in with the settings as they now are.
 *
 * Re-applying the new rows in place would not do: a setting removed (or
 * moved from the role to the database) has no value to go back to, since
 * the one from postgresql.conf or the default it overrode at login is gone.
 *
 * The copy is taken once, before the first claim.  Between the login and
 * that copy an administrator may have changed the rows; the copy's rows
 * are applied again then, as the login did, and a setting the login took
 * from a row that no longer holds it makes the worker leave at once.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_db_role_setting.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "la_call.h"
#include "base/la_compat.h"

/* The rows a session applies, in process_settings' order: earlier ones win. */
#define LA_SETTINGS_ROWS 4

typedef struct LaSettingsRow
{
	bool		of_database;	/* setdatabase is this database, else 0 */
	bool		of_role;		/* setrole is this role, else 0 */
	GucSource	source;
} LaSettingsRow;

static const LaSettingsRow la_settings_rows[LA_SETTINGS_ROWS] = {
	{true, true, PGC_S_DATABASE_USER},	/* ALTER ROLE r IN DATABASE d SET */
	{false, true, PGC_S_USER},	/* ALTER ROLE r SET */
	{true, false, PGC_S_DATABASE},	/* ALTER DATABASE d SET */
	{false, false, PGC_S_GLOBAL},	/* ALTER ROLE ALL SET */
};

/* The rows as this session applied them, in TopMemoryContext; NULL: not taken. */
static StringInfo la_settings_applied = NULL;

/* A claim found them changed: the worker must leave (la_settings_stale). */
static bool la_settings_changed = false;

/*
 * Read the rows under one snapshot: *seen gets their exact contents (an
 * absent row is told from an empty one), arrays[i] row i's setconfig or
 * NULL.  The role is the one the session logged in as.
 */
static void
la_settings_read(StringInfo seen, ArrayType **arrays)
{
	Relation	rel = table_open(DbRoleSettingRelationId, AccessShareLock);
	Snapshot	snapshot = RegisterSnapshot(GetCatalogSnapshot(DbRoleSettingRelationId));

	for (int i = 0; i < LA_SETTINGS_ROWS; i++)
	{
		const LaSettingsRow *row = &la_settings_rows[i];
		ScanKeyData keys[2];
		SysScanDesc scan;
		HeapTuple	tup;
		ArrayType  *array = NULL;

		ScanKeyInit(&keys[0], Anum_pg_db_role_setting_setdatabase, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(row->of_database ? MyDatabaseId : InvalidOid));
		ScanKeyInit(&keys[1], Anum_pg_db_role_setting_setrole, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(row->of_role ? GetAuthenticatedUserId() : InvalidOid));
		scan = systable_beginscan(rel, DbRoleSettingDatidRolidIndexId, true, snapshot, 2, keys);
		tup = systable_getnext(scan);
		appendStringInfoChar(seen, HeapTupleIsValid(tup) ? 'r' : '-');
		if (HeapTupleIsValid(tup))
		{
			bool		isnull;
			Datum		datum = heap_getattr(tup, Anum_pg_db_role_setting_setconfig,
											 RelationGetDescr(rel), &isnull);

			if (!isnull)
			{
				array = DatumGetArrayTypePCopy(datum);
				/* its header holds its length: the rows' bytes never run together */
				appendBinaryStringInfo(seen, (char *) array, VARSIZE(array));
			}
		}
		systable_endscan(scan);
		if (arrays != NULL)
			arrays[i] = array;
	}
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
}

/* Whether setconfig array (NULL: none) names setting name. */
static bool
la_settings_names(ArrayType *array, const char *name)
{
	Datum	   *items;
	bool	   *nulls;
	int			n;

	if (array == NULL)
		return false;
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *item_name;
		char	   *value;

		if (nulls[i])
			continue;
		ParseLongOption(TextDatumGetCString(items[i]), &item_name, &value);
		if (pg_strcasecmp(item_name, name) == 0)
			return true;
	}
	return false;
}

/*
 * Whether every setting this session took from a row at login is still in
 * that row.  A setting's reset source says which row it came from; one
 * that failed to apply at login (a WARNING then) has a lower source and is
 * not looked at, so a row that keeps failing never makes this false.
 */
static bool
la_settings_still_held(ArrayType **arrays)
{
	int			n;
	struct config_generic **vars = la_guc_variables(&n);

	for (int i = 0; i < n; i++)
	{
		for (int r = 0; r < LA_SETTINGS_ROWS; r++)
		{
			if (vars[i]->reset_source == la_settings_rows[r].source &&
				!la_settings_names(arrays[r], vars[i]->name))
				return false;
		}
	}
	return true;
}

/*
 * Take the copy of the rows, before the worker's first claim.  They are
 * applied again as the login applied them (same sources, same order, same
 * context), which brings in what was added or changed since the login;
 * *current is false when a setting the login took from a row is no longer
 * there, which only a new session can undo.
 */
bool
la_settings_remember(bool *current, LaError *err)
{
	volatile bool ok = true;
	LaSaved		saved;

	*current = true;
	if (!la_call_begin(err))
		return false;
	/* An administrator's cancel between tasks is aimed at no task: not at this. */
	HOLD_CANCEL_INTERRUPTS();
	la_save(&saved);
	PG_TRY();
	{
		StringInfo	seen;
		ArrayType  *arrays[LA_SETTINGS_ROWS];
		MemoryContext oldcxt;

		la_own_transaction_start();
		oldcxt = MemoryContextSwitchTo(TopMemoryContext);
		seen = makeStringInfo();
		MemoryContextSwitchTo(oldcxt);
		la_settings_read(seen, arrays);
		for (int r = 0; r < LA_SETTINGS_ROWS; r++)
		{
			if (arrays[r] != NULL)
				ProcessGUCArray(arrays[r], PGC_SUSET, la_settings_rows[r].source, GUC_ACTION_SET);
		}
		*current = la_settings_still_held(arrays);
		CommitTransactionCommand();
		la_settings_applied = seen;
	}
	PG_CATCH();
	{
		la_call_fail(err, &saved);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(la_task_context());
	RESUME_CANCEL_INTERRUPTS();
	return ok;
}

/*
 * In a claim's transaction, once it found a task: whether the rows are
 * still as this session applied them.  When not, the claim must roll back
 * and the worker leave (la_settings_stale).  Four index lookups in a shared
 * catalog; only the claims that found a task pay them.
 */
bool
la_settings_current(void)
{
	StringInfoData now;
	bool		same;

	if (la_settings_applied == NULL)
		return true;
	initStringInfo(&now);
	la_settings_read(&now, NULL);
	same = now.len == la_settings_applied->len &&
		memcmp(now.data, la_settings_applied->data, now.len) == 0;
	pfree(now.data);
	if (!same)
		la_settings_changed = true;
	return same;
}

/* Whether a claim found the settings changed: the worker must exit. */
bool
la_settings_stale(void)
{
	return la_settings_changed;
}
