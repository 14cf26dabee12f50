/*
 * catalog.c - find the extension's own objects through pg_depend, and the
 * role facts a worker depends on
 *
 * Never by name: a role that owned a schema called "lantern" could plant a
 * table called "tasks" in it.  The objects the extension script created are
 * recorded in pg_depend as members of the extension (deptype 'e'), and only
 * a superuser can create or alter this extension, so membership is the one
 * thing that says "ours".  The names used in SQL text are then built from
 * the OIDs, after the table is locked, and built again after any change to
 * a schema (ALTER SCHEMA lantern RENAME takes no lock on the tables).  Each
 * carries its OID in a comment, which hooks/sqlguard.c checks whenever a
 * statement of ours is analyzed: a name that resolves to anything else
 * fails the statement before it is planned, let alone run.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "base/la_compat.h"
#include "tables/la_tables.h"

/* Remember relid when it is one of the tables the C code uses. */
static void
la_catalog_note_member(LaCatalog *cat, Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class form;

	if (!HeapTupleIsValid(tuple))
		return;
	form = (Form_pg_class) GETSTRUCT(tuple);
	if (form->relkind == RELKIND_RELATION)
	{
		if (strcmp(NameStr(form->relname), "tasks") == 0)
			cat->tasks = relid;
		else if (strcmp(NameStr(form->relname), "task_errors") == 0)
			cat->task_errors = relid;
		else if (strcmp(NameStr(form->relname), "task_owners") == 0)
			cat->task_owners = relid;
		else if (strcmp(NameStr(form->relname), "task_attempts") == 0)
			cat->task_attempts = relid;
		else if (strcmp(NameStr(form->relname), "task_dependencies") == 0)
			cat->task_dependencies = relid;
	}
	ReleaseSysCache(tuple);
}

static void
la_catalog_scan_members(LaCatalog *cat)
{
	Relation	depend = table_open(DependRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tuple;

	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(cat->extension));
	scan = systable_beginscan(depend, DependReferenceIndexId, true, NULL, 2, key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tuple);

		if (dep->deptype == DEPENDENCY_EXTENSION && dep->classid == RelationRelationId)
			la_catalog_note_member(cat, dep->objid);
	}
	systable_endscan(scan);
	table_close(depend, AccessShareLock);
}

/* The table's schema-qualified name as it is now, for messages. */
static char *
la_catalog_display_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * The name for SQL text: a comment with the OID the name must resolve to
 * (LA_SQLGUARD_MARK, checked by hooks/sqlguard.c), then the current name.
 */
static char *
la_catalog_name(Oid relid)
{
	return psprintf(LA_SQLGUARD_MARK "%u*/%s", relid, la_catalog_display_name(relid));
}

/*
 * A user's session waits for the lock as long as it must: its own wait.
 * Our background processes never wait: they hold worker slots that the
 * whole cluster shares, and a database owner can queue a VACUUM FULL of
 * lantern.tasks behind an open transaction of their own for as long as
 * they like (their bookkeeping holds cancel interrupts, so no lock_timeout
 * could end such a wait).  They fail with 55P03 instead and try again
 * later; a worker that cannot record an outcome parks it and gives its
 * slot up when it is wanted (bgworker.Worker.record).
 */
static void
la_catalog_lock(Oid relid, LOCKMODE lockmode)
{
	if (!LA_AM_BACKGROUND_WORKER())
		LockRelationOid(relid, lockmode);
	else if (!ConditionalLockRelationOid(relid, lockmode))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("could not lock table %s now", la_catalog_display_name(relid)),
				 errdetail("Another transaction holds or waits for a conflicting lock on it, such as a VACUUM FULL.")));
}

/*
 * What the last lookup found, for the life of the process: the bookkeeping
 * looks the tables up in every transaction, and a pg_depend scan each time
 * was a good part of a trivial task's cost.  Any invalidation of one of the
 * tables (DROP EXTENSION drops them; a rename or ALTER changes them) empties
 * it, and so does any change to any schema: renaming the extension's schema
 * sends no invalidation for its tables, and the names must follow it.  Only
 * a complete, current install is remembered.
 */
static LaCatalog la_cached;
static bool la_cached_valid = false;
static bool la_cache_callback_registered = false;

static void
la_catalog_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == la_cached.tasks || relid == la_cached.task_errors ||
		relid == la_cached.task_owners || relid == la_cached.task_attempts ||
		relid == la_cached.task_dependencies)
		la_cached_valid = false;
}

static void
la_catalog_invalidate_schemas(Datum arg, int cacheid, uint32 hashvalue)
{
	la_cached_valid = false;
}

/*
 * Names are kept for good (a caller may still hold the previous ones): a
 * new copy only when the name changed, which takes a rename.
 */
static void
la_catalog_keep_name(char **kept, const char *name)
{
	if (*kept == NULL || strcmp(*kept, name) != 0)
		*kept = MemoryContextStrdup(TopMemoryContext, name);
}

/* The same for a table only some versions have (NULL: none). */
static void
la_catalog_keep_optional_name(char **kept, const char *name)
{
	if (name == NULL)
		*kept = NULL;
	else
		la_catalog_keep_name(kept, name);
}

static void
la_catalog_remember(const LaCatalog *cat)
{
	if (!la_cache_callback_registered)
	{
		CacheRegisterRelcacheCallback(la_catalog_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, la_catalog_invalidate_schemas, (Datum) 0);
		la_cache_callback_registered = true;
	}
	la_cached.extension = cat->extension;
	la_cached.tasks = cat->tasks;
	la_cached.task_errors = cat->task_errors;
	la_cached.task_owners = cat->task_owners;
	la_cached.task_attempts = cat->task_attempts;
	la_cached.task_dependencies = cat->task_dependencies;
	la_catalog_keep_name(&la_cached.tasks_name, cat->tasks_name);
	la_catalog_keep_name(&la_cached.task_errors_name, cat->task_errors_name);
	la_catalog_keep_name(&la_cached.task_owners_name, cat->task_owners_name);
	la_catalog_keep_optional_name(&la_cached.task_attempts_name, cat->task_attempts_name);
	la_catalog_keep_optional_name(&la_cached.task_dependencies_name, cat->task_dependencies_name);
	la_cached_valid = true;
}

/* Find the tables through pg_depend, and remember them; false as la_catalog_lookup. */
static bool
la_catalog_fill(LaCatalog *cat)
{
	memset(cat, 0, sizeof(*cat));
	cat->extension = get_extension_oid(LA_EXTENSION_NAME, true);
	if (!OidIsValid(cat->extension))
		return false;
	la_catalog_scan_members(cat);
	if (!OidIsValid(cat->tasks) || !OidIsValid(cat->task_errors) || !OidIsValid(cat->task_owners))
	{
		/* An older version, not updated yet: cat->extension stays set. */
		cat->tasks = cat->task_errors = cat->task_owners = InvalidOid;
		return false;
	}
	cat->tasks_name = la_catalog_name(cat->tasks);
	cat->task_errors_name = la_catalog_name(cat->task_errors);
	cat->task_owners_name = la_catalog_name(cat->task_owners);
	/* From 0.5.0 on. */
	if (OidIsValid(cat->task_attempts))
		cat->task_attempts_name = la_catalog_name(cat->task_attempts);
	if (OidIsValid(cat->task_dependencies))
		cat->task_dependencies_name = la_catalog_name(cat->task_dependencies);
	la_catalog_remember(cat);
	return true;
}

/*
 * Fill cat with the extension's tables, taking lockmode on lantern.tasks.
 * Returns false when the extension is not installed in this database (or
 * is being dropped), or is at a version that lacks one of them: then only
 * cat->extension is set.  Must run inside a transaction.
 */
bool
la_catalog_lookup(LaCatalog *cat, LOCKMODE lockmode)
{
	Oid			locked;

	if (la_cached_valid)
		*cat = la_cached;
	else if (!la_catalog_fill(cat))
		return false;
	locked = cat->tasks;
	la_catalog_lock(locked, lockmode);

	/*
	 * Taking the lock accepted the invalidations that came meanwhile: a
	 * DROP EXTENSION that committed while we waited has removed the table,
	 * a rename changed its name.  Either emptied the cache: look again.
	 */
	if (!la_cached_valid && (!la_catalog_fill(cat) || cat->tasks != locked))
	{
		memset(cat, 0, sizeof(*cat));
		return false;
	}
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(cat->tasks)))
	{
		memset(cat, 0, sizeof(*cat));
		return false;
	}
	return true;
}

/*
 * The schema the extension's tables are in (pg_extension.extnamespace is
 * pg_catalog since 0.4.0, the creator's first schema before; never this
 * one); InvalidOid without the extension.  Any version: every one has
 * lantern.tasks.
 */
Oid
la_catalog_schema(void)
{
	LaCatalog	cat;

	memset(&cat, 0, sizeof(cat));
	cat.extension = get_extension_oid(LA_EXTENSION_NAME, true);
	if (!OidIsValid(cat.extension))
		return InvalidOid;
	la_catalog_scan_members(&cat);
	return OidIsValid(cat.tasks) ? get_rel_namespace(cat.tasks) : InvalidOid;
}

/* Whether a worker can run tasks as a role: it exists and, on 15, has LOGIN. */
bool
la_worker_can_run_as(Oid roleid)
{
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	bool		canlogin = false;

	if (HeapTupleIsValid(tuple))
	{
		canlogin = !LA_WORKER_NEEDS_LOGIN || ((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin;
		ReleaseSysCache(tuple);
	}
	return canlogin;
}
