/*
 * elevate.c - run the SQL functions' queue statements as the table's owner
 *
 * Callers have no INSERT/UPDATE right on lantern.tasks: rows change only
 * through the extension's functions, which switch to the owner of
 * lantern.tasks, with a pinned search_path, for their own fixed SQL.
 * Should anything fail, transaction abort restores the user id and the GUC
 * nest level.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "la_loader.h"

static Oid
la_elevate_table_owner(Oid *tasks_relid)
{
	Oid			nsp = get_namespace_oid("lantern", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("tasks", nsp) : InvalidOid;
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"lantern.tasks\" does not exist"),
				 errhint("Run CREATE EXTENSION lantern_async.")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	*tasks_relid = relid;
	return owner;
}

void
la_elevate_begin(LaElevation *e)
{
	GetUserIdAndSecContext(&e->caller, &e->saved_sec_context);
	SetUserIdAndSecContext(la_elevate_table_owner(&e->tasks_relid),
						   e->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	e->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
la_elevate_end(LaElevation *e)
{
	SPI_finish();
	AtEOXact_GUC(true, e->nestlevel);
	SetUserIdAndSecContext(e->caller, e->saved_sec_context);
}
