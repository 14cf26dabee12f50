/*
 * enqueue.c - a new task's rows, in the shape of this database's version
 * of the extension (columns.c)
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
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
					c.timeout ? ", timeout" : "", c.datid ? ", datid" : "", c.due ? ", due" : "",
					c.timeout ? ", $5" : "", c.datid ? ", $6" : "", c.due ? ", $7" : "");
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
 * Queue a task for roleid, with username as the name it had at submit,
 * timeout its own time limit (NULL: lantern_async.task_timeout as its
 * worker's session sees it) and due the earliest it may start (0: at
 * once).  The owner row is what makes the task runnable: it is written
 * here only.
 */
int64
la_queue_insert(const LaCatalog *cat, const char *query, const char *job_name,
				const char *username, Oid roleid, const Interval *timeout, TimestampTz due)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, OIDOID, INTERVALOID, OIDOID, TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[8] = "       ";
	LaOwnerColumns c = la_queue_columns(cat);
	int			nargs = c.due ? 7 : c.datid ? 6 : c.timeout ? 5 : 4;
	bool		isnull;
	int			rc;

	if (timeout != NULL)
		la_queue_require(c.timeout, "a timeout", "timeout");
	if (due != 0)
		la_queue_require(c.due, "a start time", "due");
	values[0] = CStringGetTextDatum(query);
	values[1] = la_queue_text(job_name, &nulls[1]);
	values[2] = CStringGetTextDatum(username);
	values[3] = ObjectIdGetDatum(roleid);
	values[4] = PointerGetDatum(timeout);
	nulls[4] = timeout ? ' ' : 'n';
	/* The database it is submitted in: the only one where it runs. */
	values[5] = ObjectIdGetDatum(MyDatabaseId);
	/* Due at the submit (started_at) unless later: a past time means now. */
	values[6] = TimestampTzGetDatum(Max(due, GetCurrentTransactionStartTimestamp()));
	rc = SPI_execute_plan(la_queue_plan(&la_insert_plans[nargs - 4], cat->tasks,
										la_queue_insert_sql(cat, c), nargs, types),
						  values, nulls, false, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "lantern_async could not queue the task: %s", SPI_result_code_string(rc));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}
