/*
 * cancel.c - lantern.cancel_task() and lantern.cancel_all_async_tasks()
 *
 * A pending task is marked canceled at once.  A running one is stopped by a
 * cancel signal to its worker, which then records it as canceled; the row
 * changes only there, so a task that finishes before the signal lands keeps
 * its real outcome.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "la_loader.h"
#include "la_shared.h"

PG_FUNCTION_INFO_V1(lantern_async_cancel_task);
PG_FUNCTION_INFO_V1(lantern_async_cancel_all_tasks);

/* Same rule as pg_cancel_backend(): the task's role, or a role with its privileges. */
static void
la_cancel_check_permission(Oid caller, int64 jobid, const char *username)
{
	Oid			owner = get_role_oid(username, true);

	if (superuser_arg(caller))
		return;
	if (OidIsValid(owner) && has_privs_of_role(caller, owner))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to cancel task " INT64_FORMAT, jobid),
			 errdetail("Only roles with privileges of role \"%s\", which submitted the task, may cancel it.",
					   username)));
}

static bool
la_cancel_pending(int64 jobid)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(jobid)};

	bool		isnull;

	/* 57014 as for a canceled running task, so task_errors reads the same. */
	if (SPI_execute_with_args("WITH canceled AS ("
							  "  UPDATE lantern.tasks SET status = 'canceled', "
							  "         error_message = 'Canceled by user', "
							  "         duration = clock_timestamp() - started_at "
							  "  WHERE jobid = $1 AND status = 'pending' RETURNING jobid), "
							  "recorded AS ("
							  "  INSERT INTO lantern.task_errors (jobid, sqlstate) "
							  "  SELECT jobid, '57014' FROM canceled) "
							  "SELECT count(*) FROM canceled",
							  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not cancel task " INT64_FORMAT, jobid);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) == 1;
}

/*
 * Lock the row first: a worker claiming it at this moment finishes its claim,
 * and then the task is found running in that worker's slot.
 */
static bool
la_cancel_one(int64 jobid)
{
	LaElevation e;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(jobid)};
	bool		canceled = false;

	la_elevate_begin(&e);
	if (SPI_execute_with_args("SELECT username, status FROM lantern.tasks WHERE jobid = $1 FOR UPDATE",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up task " INT64_FORMAT, jobid);
	if (SPI_processed == 1)
	{
		char	   *username = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		char	   *status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		la_cancel_check_permission(e.caller, jobid, username);
		if (strcmp(status, "pending") == 0)
			canceled = la_cancel_pending(jobid);
		else if (strcmp(status, "running") == 0)
			canceled = la_slot_request_cancel(jobid, e.tasks_relid);
	}
	la_elevate_end(&e);
	return canceled;
}

/* Returns true when the task was canceled or its cancel was sent; false when it does not exist or has finished. */
Datum
lantern_async_cancel_task(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(la_cancel_one(PG_GETARG_INT64(0)));
}

/* The caller's own unfinished tasks; a superuser's: everybody's. */
Datum
lantern_async_cancel_all_tasks(PG_FUNCTION_ARGS)
{
	LaElevation e;
	Oid			argtypes[2] = {BOOLOID, TEXTOID};
	Datum		values[2];
	int64	   *jobids;
	uint64		njobs;

	la_elevate_begin(&e);
	values[0] = BoolGetDatum(superuser_arg(e.caller));
	values[1] = CStringGetTextDatum(GetUserNameFromId(e.caller, false));
	if (SPI_execute_with_args("SELECT jobid FROM lantern.tasks "
							  "WHERE status IN ('pending', 'running') AND ($1 OR username = $2) "
							  "ORDER BY jobid",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the tasks to cancel");
	njobs = SPI_processed;
	jobids = palloc(sizeof(int64) * Max(njobs, 1));
	for (uint64 i = 0; i < njobs; i++)
	{
		bool		isnull;

		jobids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	la_elevate_end(&e);

	for (uint64 i = 0; i < njobs; i++)
		(void) la_cancel_one(jobids[i]);
	PG_RETURN_VOID();
}
