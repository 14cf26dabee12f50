/*
 * attempts.c - the end of one attempt of a task submitted with retries:
 * its row in task_attempts, and a retry (the task pending again, due at
 * its next attempt)
 *
 * From 0.5.0 on.  Each attempt of such a task is recorded in the same
 * statement as the status change it ends with, so the two commit together:
 * a retry, or the task's final outcome (its success, written in the
 * transaction that commits its work, included).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "tables/la_tables.h"
#include "state/la_state.h"

/* The settle ends an attempt that gets a row in task_attempts (from 0.5.0 on). */
bool
la_queue_records_attempt(const LaCatalog *cat, const LaSettle *s)
{
	return s->attempt > 0 && cat->task_attempts_name != NULL;
}

/*
 * The attempt's row, as a part of a settle's statement whose "settled"
 * names the task, with $4 its error_message and $5 its SQLSTATE (both NULL
 * on success), and $6-$8 as la_queue_attempt_args puts them.
 */
const char *
la_queue_attempt_sql(const LaCatalog *cat, const LaSettle *s)
{
	if (!la_queue_records_attempt(cat, s))
		return "";
	return psprintf(", attempted AS ("
					"  INSERT INTO %s (jobid, attempt, started_at, duration, sqlstate, error_message) "
					"  SELECT jobid, $6, $7, coalesce($8, clock_timestamp()) - $7, $5, $4 FROM settled)",
					cat->task_attempts_name);
}

/* $6 the attempt's number, $7 its start, $8 its end (NULL: now). */
void
la_queue_attempt_args(const LaSettle *s, Datum *values, char *nulls)
{
	values[0] = Int32GetDatum(s->attempt);
	values[1] = TimestampTzGetDatum(s->attempt_started);
	values[2] = TimestampTzGetDatum(s->attempt_ended);
	nulls[0] = nulls[1] = ' ';
	nulls[2] = s->attempt_ended == 0 ? 'n' : ' ';
}

/* A running task going back to pending: a retry. */
bool
la_queue_is_retry(const LaSettle *s)
{
	return s->from_status != NULL && strcmp(s->from_status, "running") == 0 &&
		s->to_status != NULL && strcmp(s->to_status, "pending") == 0;
}

/*
 * The task's row first, then its queue entry (the claims' order): pending
 * again, with no error_message or duration while it waits (the attempt's
 * are in task_attempts), due at its next attempt.  Only from running, so
 * one attempt is retried once.
 */
static char *
la_queue_retry_sql(const LaCatalog *cat)
{
	return psprintf("WITH settled AS ("
					"  UPDATE %s t SET status = 'pending', error_message = NULL, duration = NULL "
					"  WHERE t.jobid = $1 AND t.status = 'running' RETURNING t.jobid), "
					"requeued AS ("
					"  UPDATE %s o SET due = $2 WHERE o.jobid = $1 AND EXISTS (SELECT FROM settled) "
					"  RETURNING o.roleid), "
					"attempted AS ("
					"  INSERT INTO %s (jobid, attempt, started_at, duration, sqlstate, error_message) "
					"  SELECT jobid, $5, $6, coalesce($7, clock_timestamp()) - $6, $4, $3 FROM settled) "
					"SELECT roleid FROM requeued",
					cat->tasks_name, cat->task_owners_name, cat->task_attempts_name);
}

/*
 * Returns 1 when the task was running and is now pending, else 0.  Its
 * role is served at the next attempt's time once this commits, as a
 * submit's would be (state/commit_notes.c), whoever records the retry and
 * whatever that worker does next.
 */
int64
la_queue_retry(const LaCatalog *cat, const LaSettle *s)
{
	static LaSavedPlan plan;
	Oid			types[7] = {INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
	TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[8] = "       ";
	bool		isnull;
	int			rc;

	if (!la_queue_has_due(cat))
		elog(ERROR, "lantern_async cannot retry a task before extension version 0.5.0");
	values[0] = Int64GetDatum(s->jobid);
	values[1] = TimestampTzGetDatum(s->due);
	values[2] = la_queue_text(s->message, &nulls[2]);
	values[3] = la_queue_text(s->sqlstate, &nulls[3]);
	la_queue_attempt_args(s, &values[4], &nulls[4]);
	rc = la_queue_run(la_queue_plan(&plan, cat->tasks, la_queue_retry_sql(cat), 7, types),
					  values, nulls, s->latest_snapshot);
	if (rc != SPI_OK_SELECT || SPI_processed > 1)
		elog(ERROR, "lantern_async could not queue a task's next attempt: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return 0;
	la_demand_note_at_commit(DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 1, &isnull)),
							 s->due);
	return 1;
}
