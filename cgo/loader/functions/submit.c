/*
 * submit.c - lantern.async_task(): queue a task, and note it on the demand
 * board at commit (state/commit_notes.c)
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "tables/la_tables.h"
#include "state/la_state.h"

PG_FUNCTION_INFO_V1(lantern_async_task);

static char *
la_submit_query_arg(FunctionCallInfo fcinfo)
{
	char	   *query;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task query must not be null")));
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (query[strspn(query, " \t\n\r\f\v")] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task query must not be empty")));
	return query;
}

/* The worker logs in as the submitting role, which 15 requires to have LOGIN (base/la_compat.h). */
static void
la_submit_check_role(Oid roleid)
{
	char	   *rolename;

	if (la_worker_can_run_as(roleid))
		return;
	rolename = GetUserNameFromId(roleid, false);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("role \"%s\" cannot submit background tasks", rolename),
			 errdetail("A task runs in a session of the role that submitted it, "
					   "and role \"%s\" does not have the LOGIN attribute.", rolename),
			 errhint("Submit the task as a role that can log in (for example after RESET ROLE), "
					 "or grant LOGIN to role \"%s\".", rolename)));
}

/* lantern_async.database, when set, is the one database served. */
static void
la_submit_check_database(void)
{
	if (la_database == NULL || la_database[0] == '\0')
		return;
	if (strcmp(get_database_name(MyDatabaseId), la_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("lantern_async only runs tasks in database \"%s\"", la_database),
				 errdetail("lantern_async.database is set, and only that database is served."),
				 errhint("Submit the task in database \"%s\", or reset lantern_async.database and restart the server.",
						 la_database)));
}

/*
 * The task's own time limit: NULL (or no third argument) leaves it to
 * lantern_async.task_timeout as the worker's session sees it.  A limit of
 * zero or less is refused rather than read as "none": a task that must
 * not be limited while the setting is on gets a long timeout instead.
 */
static Interval *
la_submit_timeout_arg(FunctionCallInfo fcinfo)
{
	Interval   *timeout;

	if (PG_NARGS() < 3 || PG_ARGISNULL(2))
		return NULL;
	timeout = PG_GETARG_INTERVAL_P(2);
	if (la_interval_usecs(timeout) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be positive"),
				 errdetail("The timeout is how long the task may run before it is stopped."),
				 errhint("Pass NULL to use lantern_async.task_timeout instead.")));
	return timeout;
}

/*
 * The task's earliest start: NULL (or fewer arguments) or a time already
 * past, -infinity included, is at once (returned as 0).  Infinity is
 * refused: the task would never run.
 */
static TimestampTz
la_submit_run_after_arg(FunctionCallInfo fcinfo)
{
	TimestampTz run_after;

	if (PG_NARGS() < 4 || PG_ARGISNULL(3))
		return 0;
	run_after = PG_GETARG_TIMESTAMPTZ(3);
	if (TIMESTAMP_IS_NOEND(run_after))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("run_after must not be infinity"),
				 errdetail("A task that may not start before infinity would never run."),
				 errhint("Pass NULL to start the task at once.")));
	return run_after <= GetCurrentTransactionStartTimestamp() ? 0 : run_after;
}

/*
 * How many attempts may follow the first after a transient failure
 * (bgworker/retry.go): NULL is none.  Bounded, so that a task cannot be
 * kept retrying for years, and a mistyped count is caught.
 */
#define LA_MAX_RETRIES 100

static int32
la_submit_retries_arg(FunctionCallInfo fcinfo)
{
	int32		retries;

	if (PG_NARGS() < 5 || PG_ARGISNULL(4))
		return 0;
	retries = PG_GETARG_INT32(4);
	if (retries < 0 || retries > LA_MAX_RETRIES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retries must be between 0 and %d", LA_MAX_RETRIES),
				 errdetail("retries is how many more attempts a task may have after a transient failure.")));
	return retries;
}

/* The tasks this one waits for (depends_on), sorted and distinct. */
typedef struct LaDepends
{
	int64	   *jobids;
	int			n;				/* 0: none */
} LaDepends;

/*
 * Inserted as the bootstrap superuser (tables/privilege.c), for the
 * caller's role.  The tasks named in depends_on are checked first as the
 * caller (tables/dependencies.c): only those it can see may be named.
 */
static int64
la_submit_insert(const LaNewTask *task, const LaDepends *depends)
{
	LaPrivileged p;
	LaCatalog	cat;
	int64		jobid;

	/*
	 * Wait for the queue's table as an INSERT into it would, behind a lock
	 * request queued on it (a CREATE TRIGGER or VACUUM FULL waiting for an
	 * open transaction, say), for as long as this session's own
	 * lock_timeout and statement_timeout allow: the switch below pins
	 * lock_timeout to 0, and then only takes the lock held already.
	 */
	if (la_catalog_lookup(&cat, RowExclusiveLock) && depends->n > 0)
		la_dependencies_check_visible(&cat, depends->jobids, depends->n);
	la_privileged_begin(&p, RowExclusiveLock);
	la_privileged_require(&p);
	jobid = la_queue_insert(&p.cat, task);
	if (depends->n > 0)
		la_dependencies_record(&p.cat, jobid, depends->jobids, depends->n);
	la_privileged_end(&p);

	/* Jobids are positive: the workers' shared memory uses 0 for "no task". */
	if (jobid <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
				 errmsg("lantern.tasks_jobid_seq gave jobid " INT64_FORMAT ", which is not positive", jobid),
				 errhint("Restart the sequence at 1 or above: ALTER SEQUENCE lantern.tasks_jobid_seq MINVALUE 1 RESTART.")));
	return jobid;
}

static int
la_submit_jobid_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * depends_on (the sixth argument): NULL or empty is none; the elements of
 * an array of any dimensions, each once.  A NULL element is refused
 * rather than skipped: it names no task to wait for.
 */
static LaDepends
la_submit_depends_arg(FunctionCallInfo fcinfo)
{
	LaDepends	depends = {NULL, 0};
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;

	if (PG_NARGS() < 6 || PG_ARGISNULL(5))
		return depends;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(5), INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &nelems);
	if (nelems == 0)
		return depends;
	depends.jobids = palloc(sizeof(int64) * nelems);
	for (int i = 0; i < nelems; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("depends_on must not contain null")));
		depends.jobids[i] = DatumGetInt64(elems[i]);
	}
	qsort(depends.jobids, nelems, sizeof(int64), la_submit_jobid_cmp);
	for (int i = 0; i < nelems; i++)
		if (depends.n == 0 || depends.jobids[depends.n - 1] != depends.jobids[i])
			depends.jobids[depends.n++] = depends.jobids[i];
	return depends;
}

Datum
lantern_async_task(PG_FUNCTION_ARGS)
{
	LaNewTask	task = {0};
	LaDepends	depends;
	Oid			roleid = GetUserId();
	int64		jobid;

	/* On a standby, or read-only: say so, before the insert fails on it. */
	PreventCommandDuringRecovery("lantern.async_task()");
	PreventCommandIfReadOnly("lantern.async_task()");
	task.query = la_submit_query_arg(fcinfo);

	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		task.job_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	task.timeout = la_submit_timeout_arg(fcinfo);
	task.due = la_submit_run_after_arg(fcinfo);
	task.retries = la_submit_retries_arg(fcinfo);
	depends = la_submit_depends_arg(fcinfo);
	task.depends = depends.n > 0;

	la_submit_check_database();
	la_submit_check_role(roleid);
	task.roleid = roleid;
	task.username = GetUserNameFromId(roleid, false);
	jobid = la_submit_insert(&task, &depends);

	la_demand_note_at_commit(roleid, task.due);
	PG_RETURN_INT64(jobid);
}
