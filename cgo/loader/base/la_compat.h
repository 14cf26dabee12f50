/*
 * la_compat.h - the differences between the PostgreSQL versions we build on
 *
 * Every PG_VERSION_NUM test of the project lives here; the code elsewhere
 * uses the names below and reads the same on every version.  Include it
 * after postgres.h, in the loader or in the Go library's C helpers.
 */
#ifndef LA_COMPAT_H
#define LA_COMPAT_H

#include "postgres.h"

#include "miscadmin.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"

#if PG_VERSION_NUM >= 160000
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#else
#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "utils/syscache.h"
#endif
#if PG_VERSION_NUM >= 170000
#include "postmaster/bgworker.h"
#endif

/*
 * A worker logs in as the role that submitted its task.  17 lets a
 * background worker log in as a role without LOGIN
 * (BGWORKER_BYPASS_ROLELOGINCHECK); on 15 only LOGIN roles can run tasks.
 * LA_ROLE_LOGIN_SQL is that condition on pg_authid row "r", in SQL.
 */
#if PG_VERSION_NUM >= 170000
#define LA_WORKER_CONNECT_FLAGS BGWORKER_BYPASS_ROLELOGINCHECK
#define LA_WORKER_NEEDS_LOGIN false
#define LA_ROLE_LOGIN_SQL "true"
#else
#define LA_WORKER_CONNECT_FLAGS 0
#define LA_WORKER_NEEDS_LOGIN true
#define LA_ROLE_LOGIN_SQL "r.rolcanlogin"
#endif

/*
 * This process's index in ProcGlobal->allProcs, which is how other
 * processes reach its latch.  17 replaced PGPROC.pgprocno with MyProcNumber.
 */
#if PG_VERSION_NUM >= 170000
#define LA_MY_PROCNO ((int) MyProcNumber)
#else
#define LA_MY_PROCNO (MyProc->pgprocno)
#endif

/* 17 replaced the IsBackgroundWorker flag with AmBackgroundWorkerProcess(). */
#if PG_VERSION_NUM >= 170000
#define LA_AM_BACKGROUND_WORKER() AmBackgroundWorkerProcess()
#else
#define LA_AM_BACKGROUND_WORKER() (IsBackgroundWorker)
#endif

/*
 * 17's transaction_timeout, lifted for the rest of the current transaction
 * (as SET LOCAL would): the worker's own bookkeeping must not inherit the
 * limit a role or database set for its tasks.  Setting it to 0 also stops
 * the timer, and a timeout already pending is then ignored (PostgreSQL
 * acts on one only while the setting is above 0).  15 has no such setting.
 */
static inline void
la_lift_transaction_timeout(void)
{
#if PG_VERSION_NUM >= 170000
	(void) set_config_option("transaction_timeout", "0", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
#endif
}

/* 16 replaced the per-catalog pg_*_ownercheck() with object_ownercheck(). */
static inline bool
la_database_ownercheck(Oid dboid, Oid roleid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(DatabaseRelationId, dboid, roleid);
#else
	return pg_database_ownercheck(dboid, roleid);
#endif
}

/*
 * Whether the current user may create databases (superuser or CREATEDB).
 * 15's postgres exports have_createdb_privilege() only from some minor
 * release on (15.20 does, 15.18 does not), so a library built on one minor
 * would not load on another: on 15 we ask the catalog ourselves.
 */
static inline bool
la_have_createdb_privilege(void)
{
#if PG_VERSION_NUM >= 160000
	return have_createdb_privilege();
#else
	HeapTuple	tup;
	bool		result;

	if (superuser())
		return true;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (!HeapTupleIsValid(tup))
		return false;
	result = ((Form_pg_authid) GETSTRUCT(tup))->rolcreatedb;
	ReleaseSysCache(tup);
	return result;
#endif
}

/*
 * Run a portal to completion at top level, as exec_simple_query does.
 * 18 dropped PortalRun()'s run_once argument (it had to be true).
 */
static inline bool
la_portal_run(Portal portal, bool isTopLevel, DestReceiver *dest, QueryCompletion *qc)
{
#if PG_VERSION_NUM >= 180000
	return PortalRun(portal, FETCH_ALL, isTopLevel, dest, dest, qc);
#else
	return PortalRun(portal, FETCH_ALL, isTopLevel, true, dest, dest, qc);
#endif
}

/*
 * Every GUC variable of the process, placeholders included; their
 * config_generic (utils/guc_tables.h) tells where each value came from
 * (functions/wait_caller.c looks at their stacks of saved values, la_settings.c at sources).
 * 16 made get_guc_variables() count them itself.
 */
static inline struct config_generic **
la_guc_variables(int *n)
{
#if PG_VERSION_NUM >= 160000
	return get_guc_variables(n);
#else
	*n = GetNumConfigOptions();
	return get_guc_variables();
#endif
}

#endif							/* LA_COMPAT_H */
