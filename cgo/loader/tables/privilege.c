/*
 * privilege.c - run the extension's own fixed SQL as the bootstrap superuser
 *
 * Callers have no INSERT/UPDATE right on the queue: rows change only through
 * the extension's C code, which switches to the bootstrap superuser around
 * its own statements, whatever session it runs in: a submitter's backend,
 * a worker between tasks, or a worker at the end of a task's transaction.
 * SECURITY_RESTRICTED_OPERATION keeps anything the session set up (a
 * temporary object, a SET ROLE) from running with those rights, and the
 * settings that could change what fixed SQL does are pinned in a GUC nest
 * level of their own.  One way in, one way out: the SQL functions (submit.c,
 * cancel.c) and the bookkeeping (helpers/la_bookkeeping.c) all use it.  Should
 * anything fail, transaction abort restores the user id and the nest level.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "tables/la_tables.h"

static const char *const la_planner_methods[] = {
	"enable_seqscan", "enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan",
	"enable_tidscan", "enable_sort", "enable_hashagg", "enable_nestloop",
	"enable_hashjoin", "enable_mergejoin", "enable_material", "enable_memoize",
};

static void
la_privileged_pin(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Switch, pin, connect SPI, and find the extension's tables (locking
 * lantern.tasks in lockmode).  p->installed tells whether they exist.
 */
void
la_privileged_begin(LaPrivileged *p, LOCKMODE lockmode)
{
	GetUserIdAndSecContext(&p->caller, &p->saved_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   p->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	p->nestlevel = NewGUCNestLevel();
	la_privileged_pin("search_path", "pg_catalog, pg_temp");
	la_privileged_pin("lock_timeout", "0");
	la_privileged_pin("session_replication_role", "origin");
	la_privileged_pin("row_security", "on");
	/* A role's planner settings must not make the queue's statements slow. */
	for (int i = 0; i < lengthof(la_planner_methods); i++)
		la_privileged_pin(la_planner_methods[i], "on");
	/* Nor choose between a statement's custom and generic plans (statements.c). */
	la_privileged_pin("plan_cache_mode", "auto");
	/*
	 * Nor start parallel workers (force_parallel_mode, debug_parallel_query):
	 * processes from the pool our workers need, for statements that read a
	 * few rows.  None is planned with no worker per Gather.
	 */
	la_privileged_pin("max_parallel_workers_per_gather", "0");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	p->installed = la_catalog_lookup(&p->cat, lockmode);
}

void
la_privileged_end(LaPrivileged *p)
{
	SPI_finish();
	AtEOXact_GUC(true, p->nestlevel);
	SetUserIdAndSecContext(p->caller, p->saved_sec_context);
}

/* The SQL functions exist only with the extension, but DROP EXTENSION may have just committed. */
void
la_privileged_require(LaPrivileged *p)
{
	if (!p->installed && OidIsValid(p->cat.extension))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" must be updated before it can be used", LA_EXTENSION_NAME),
				 errdetail("The version installed in this database is older than the library the server loaded."),
				 errhint("Run ALTER EXTENSION %s UPDATE.", LA_EXTENSION_NAME)));
	if (!p->installed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database", LA_EXTENSION_NAME),
				 errhint("Run CREATE EXTENSION %s.", LA_EXTENSION_NAME)));
}
