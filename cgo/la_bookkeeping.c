/*
 * la_bookkeeping.c - the queue in lantern.tasks, through SPI
 *
 * Every helper is one short transaction of fixed SQL, run as the bootstrap
 * superuser with pinned settings whatever session it runs in: a task's
 * role may be read-only by default, have a lock_timeout, or own objects in
 * its search_path, and none of that may break or hijack the bookkeeping.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "storage/lmgr.h"

#include "la_call.h"
#include "la_shared.h"

typedef struct LaBookkeeping
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			saved_holdoff;
	int			saved_cancel_holdoff;
	Oid			tasks_relid;	/* lantern.tasks, InvalidOid when not installed */
	bool		installed;
} LaBookkeeping;

static void
la_bk_pin(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/* The queue table, when the extension is installed in this database. */
static Oid
la_bk_tasks_relid(void)
{
	Oid			nsp;
	Oid			relid;

	if (!OidIsValid(get_extension_oid("lantern_async", true)))
		return InvalidOid;
	nsp = get_namespace_oid("lantern", true);
	relid = OidIsValid(nsp) ? get_relname_relid("tasks", nsp) : InvalidOid;
	if (!OidIsValid(relid))
		return InvalidOid;

	/*
	 * Lock it before use, then look again: a DROP EXTENSION that committed
	 * while we waited for the lock has removed it.
	 */
	LockRelationOid(relid, AccessShareLock);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		return InvalidOid;
	return relid;
}

/*
 * Open the bookkeeping transaction.  Cancel interrupts are held throughout:
 * a cancel aimed at a task must never break a claim or a result.  The GUC
 * nest level opened here is popped by the commit, after the commit record
 * was written with synchronous_commit = on.
 */
static void
la_bk_open(LaBookkeeping *bk)
{
	bk->saved_holdoff = InterruptHoldoffCount;
	bk->saved_cancel_holdoff = QueryCancelHoldoffCount;
	HOLD_CANCEL_INTERRUPTS();

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	XactIsoLevel = XACT_READ_COMMITTED;
	XactReadOnly = false;

	GetUserIdAndSecContext(&bk->saved_userid, &bk->saved_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   bk->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	(void) NewGUCNestLevel();
	la_bk_pin("search_path", "pg_catalog, pg_temp");
	la_bk_pin("synchronous_commit", "on");
	la_bk_pin("lock_timeout", "0");
	la_bk_pin("statement_timeout", "0");
	la_bk_pin("session_replication_role", "origin");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	bk->tasks_relid = la_bk_tasks_relid();
	bk->installed = OidIsValid(bk->tasks_relid);
}

static void
la_bk_close(LaBookkeeping *bk)
{
	PopActiveSnapshot();
	SPI_finish();
	SetUserIdAndSecContext(bk->saved_userid, bk->saved_sec_context);
	CommitTransactionCommand();
	MemoryContextSwitchTo(la_task_context());
	RESUME_CANCEL_INTERRUPTS();
}

static void
la_bk_execute(const char *sql, int nargs, Oid *types, Datum *values,
			  const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "lantern_async bookkeeping query failed: %s", SPI_result_code_string(rc));
}

#define LA_BK_BEGIN(bk, err) \
	do { \
		volatile bool la_ok_ = true; \
		if (!la_call_begin(err)) \
			return false; \
		la_reset_task_context(); \
		PG_TRY(); \
		{ \
			la_bk_open(&(bk));

#define LA_BK_END(bk, err) \
			la_bk_close(&(bk)); \
		} \
		PG_CATCH(); \
		{ \
			la_call_fail((err), (bk).saved_holdoff, (bk).saved_cancel_holdoff); \
			la_ok_ = false; \
		} \
		PG_END_TRY(); \
		return la_ok_; \
	} while (0)

bool
la_bk_ready(bool *ready, LaError *err)
{
	LaBookkeeping bk;

	LA_BK_BEGIN(bk, err);
	*ready = bk.installed;
	LA_BK_END(bk, err);
}

/*
 * Claim the oldest pending task of this session's role.  The slot learns
 * the jobid before the claim commits, so that from the moment the row reads
 * 'running' the dispatcher can tell which process owns it.
 */
bool
la_bk_claim(int slot, int64_t *jobid, char **query, uint32_t *tasks_relid, LaError *err)
{
	LaBookkeeping bk;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	*jobid = 0;
	*query = NULL;
	LA_BK_BEGIN(bk, err);
	if (bk.installed)
	{
		bool		isnull;

		values[0] = CStringGetTextDatum(GetUserNameFromId(GetSessionUserId(), false));
		la_bk_execute("UPDATE lantern.tasks SET status = 'running' "
					  "WHERE jobid = (SELECT jobid FROM lantern.tasks "
					  "               WHERE status = 'pending' AND username = $1 "
					  "               ORDER BY jobid LIMIT 1 FOR UPDATE SKIP LOCKED) "
					  "RETURNING jobid, query",
					  1, types, values, NULL, SPI_OK_UPDATE_RETURNING);
		if (SPI_processed == 1)
		{
			HeapTuple	row = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;

			*jobid = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
			*query = MemoryContextStrdup(la_result_context(),
										 TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull)));
			*tasks_relid = bk.tasks_relid;
			la_slot_set_job(slot, *jobid, bk.tasks_relid);
		}
	}
	LA_BK_END(bk, err);
}

/*
 * Move tasks from one status to a final one, once: jobid 0 means any job,
 * a NULL username any role.  Records the SQLSTATE of a failure beside it.
 * A tasks_relid other than 0 must still be the current lantern.tasks: after
 * DROP and CREATE EXTENSION, a jobid of the old table may name a new task.
 */
bool
la_bk_settle(int64_t jobid, uint32_t tasks_relid, const char *username, const char *from_status,
			 const char *to_status, const char *message, const char *sqlstate,
			 int64_t *count, LaError *err)
{
	LaBookkeeping bk;
	Oid			types[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[7] = "      ";

	*count = 0;
	LA_BK_BEGIN(bk, err);
	if (bk.installed && (tasks_relid == 0 || tasks_relid == bk.tasks_relid))
	{
		bool		isnull;

		values[0] = Int64GetDatum(jobid);
		values[1] = username ? CStringGetTextDatum(username) : (Datum) 0;
		nulls[1] = username ? ' ' : 'n';
		values[2] = CStringGetTextDatum(from_status);
		values[3] = CStringGetTextDatum(to_status);
		values[4] = message ? CStringGetTextDatum(message) : (Datum) 0;
		nulls[4] = message ? ' ' : 'n';
		values[5] = sqlstate ? CStringGetTextDatum(sqlstate) : (Datum) 0;
		nulls[5] = sqlstate ? ' ' : 'n';
		la_bk_execute("WITH settled AS ("
					  "  UPDATE lantern.tasks SET status = $4, error_message = $5, "
					  "         duration = clock_timestamp() - started_at "
					  "  WHERE status = $3 AND ($1 = 0 OR jobid = $1) "
					  "    AND ($2 IS NULL OR username = $2) "
					  "  RETURNING jobid), "
					  "recorded AS ("
					  "  INSERT INTO lantern.task_errors (jobid, sqlstate) "
					  "  SELECT jobid, $6 FROM settled WHERE $6 IS NOT NULL) "
					  "SELECT count(*) FROM settled",
					  6, types, values, nulls, SPI_OK_SELECT);
		*count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	LA_BK_END(bk, err);
}

/* One row per role with pending tasks, oldest first. */
bool
la_bk_queues(LaQueueRow **rows, int *nrows, LaError *err)
{
	LaBookkeeping bk;

	*rows = NULL;
	*nrows = 0;
	LA_BK_BEGIN(bk, err);
	if (bk.installed)
	{
		la_bk_execute("SELECT t.username, min(t.jobid), count(*), "
					  "       coalesce(r.oid, 0)::int8, coalesce(r.rolcanlogin, false) "
					  "FROM lantern.tasks t LEFT JOIN pg_catalog.pg_authid r ON r.rolname = t.username "
					  "WHERE t.status = 'pending' "
					  "GROUP BY t.username, r.oid, r.rolcanlogin ORDER BY 2",
					  0, NULL, NULL, NULL, SPI_OK_SELECT);
		*nrows = (int) SPI_processed;
		*rows = MemoryContextAllocZero(la_result_context(), sizeof(LaQueueRow) * Max(*nrows, 1));
		for (int i = 0; i < *nrows; i++)
		{
			HeapTuple	row = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			(*rows)[i].username = MemoryContextStrdup(la_result_context(),
													  TextDatumGetCString(SPI_getbinval(row, desc, 1, &isnull)));
			(*rows)[i].oldest_jobid = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
			(*rows)[i].pending = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
			(*rows)[i].roleid = (uint32_t) DatumGetInt64(SPI_getbinval(row, desc, 4, &isnull));
			(*rows)[i].canlogin = DatumGetBool(SPI_getbinval(row, desc, 5, &isnull));
		}
	}
	LA_BK_END(bk, err);
}
