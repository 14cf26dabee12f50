/*
 * enqueue.c - a new task's rows, in the shape of this database's version
 * of the extension (columns.c)
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "tables/la_tables.h"

/* The saved insert of each version's owner row (columns.c): 0.2.0 to 0.5.0. */
static LaSavedPlan la_insert_plans[4];

static char *
la_queue_insert_sql(const LaCatalog *cat, LaOwnerColumns c)
{
	return psprintf("WITH task AS ("
					"  INSERT INTO %s (query, job_name, username, status) "
					"  VALUES ($1, $2, $3, 'pending') RETURNING jobid), "
					"owner AS ("
					"  INSERT INTO %s (jobid, roleid%s%s%s) SELECT jobid, $4%s%s%s FROM task) "
					"SELECT jobid FROM task",
					cat->tasks_name, cat->task_owners_name,
					c.timeout ? ", timeout" : "", c.datid ? ", datid" : "",
					c.due ? ", due, retries, depends" : "",
					c.timeout ? ", $5" : "", c.datid ? ", $6" : "", c.due ? ", $7, $8, $9" : "");
}

static void
la_queue_require(bool has, const char *what, const char *column)
{
	if (!has)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" must be updated before tasks can have %s", LA_EXTENSION_NAME, what),
				 errdetail("The version installed in this database has no lantern.task_owners.%s column.", column),
				 errhint("Run ALTER EXTENSION %s UPDATE.", LA_EXTENSION_NAME)));
}

/*
 * Run the insert with the session's triggers in replica mode.  The tables'
 * one trigger it would fire is the owner row's foreign key, which checks
 * that the row references a task: the same statement inserted that task
 * and gave the owner row its jobid, so the check cannot fail.  Planning
 * the check was the largest part of a new backend's first submit (about
 * 70 of the 170 page faults it pays more than a plain INSERT, tests/bench
 * row 13).  No user code runs in the statement (the tables are the
 * extension's, and it runs as the bootstrap superuser), and the window is
 * this statement only.  The variable is set directly: through the setting,
 * each change would empty the session's plan cache, the user's prepared
 * statements with it.  It is put back on error too, before the error
 * leaves this function.
 */
static int
la_queue_insert_run(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			saved_role = SessionReplicationRole;
	int			rc;

	SessionReplicationRole = SESSION_REPLICATION_ROLE_REPLICA;
	PG_TRY();
	{
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		SessionReplicationRole = saved_role;
	}
	PG_END_TRY();
	return rc;
}

/*
 * Queue a task (la_tables.h says what each field means).  The owner row is
 * what makes the task runnable: it is written here only.
 */
int64
la_queue_insert(const LaCatalog *cat, const LaNewTask *task)
{
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, OIDOID, INTERVALOID, OIDOID, TIMESTAMPTZOID,
	INT4OID, BOOLOID};
	Datum		values[9];
	char		nulls[10] = "         ";
	LaOwnerColumns c = la_queue_columns(cat);
	int			nargs = c.due ? 9 : c.datid ? 6 : c.timeout ? 5 : 4;
	bool		isnull;
	int			rc;

	if (task->timeout != NULL)
		la_queue_require(c.timeout, "a timeout", "timeout");
	if (task->due != 0)
		la_queue_require(c.due, "a start time", "due");
	if (task->retries != 0)
		la_queue_require(c.due, "retries", "retries");
	if (task->depends)
		la_queue_require(c.due, "dependencies", "depends");
	values[0] = CStringGetTextDatum(task->query);
	values[1] = la_queue_text(task->job_name, &nulls[1]);
	values[2] = CStringGetTextDatum(task->username);
	values[3] = ObjectIdGetDatum(task->roleid);
	values[4] = PointerGetDatum(task->timeout);
	nulls[4] = task->timeout ? ' ' : 'n';
	/* The database it is submitted in: the only one where it runs. */
	values[5] = ObjectIdGetDatum(MyDatabaseId);
	/* Due at the submit (started_at) unless later: a past time means now. */
	values[6] = TimestampTzGetDatum(Max(task->due, GetCurrentTransactionStartTimestamp()));
	values[7] = Int32GetDatum(task->retries);
	values[8] = BoolGetDatum(task->depends);
	rc = la_queue_insert_run(la_queue_plan(&la_insert_plans[c.due ? 3 : nargs - 4], cat->tasks,
										   la_queue_insert_sql(cat, c), nargs, types),
							 values, nulls);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "lantern_async could not queue the task: %s", SPI_result_code_string(rc));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}
