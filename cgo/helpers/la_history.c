/*
 * la_history.c - a scout deletes the finished tasks that
 * lantern_async.history_retention no longer keeps, and tells the launcher
 * (loader/state/history.c) when the next ones fall due
 *
 * Oldest first through tasks_finished_idx, LA_HISTORY_BATCH rows per
 * transaction, skipping rows a user holds locked: no batch holds locks for
 * long, and nobody's lock can make a scout wait.  Only finished rows are
 * candidates; pending and running ones never are.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "la_call.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

#define LA_FINISHED "t.status IN ('succeeded', 'failed', 'canceled')"

typedef struct LaExpire
{
	TimestampTz cutoff;			/* rows finished before it go */
	int64		deleted;
} LaExpire;

static LaSavedPlan la_expire_plan;

static void
la_history_expire_body(LaPrivileged *p, void *arg)
{
	LaExpire   *c = arg;
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(c->cutoff)};
	int			rc;
	char	   *sql;

	/* A row finished before the cutoff was submitted before it: the index's range. */
	sql = psprintf("DELETE FROM %s WHERE jobid IN ("
				   "  SELECT t.jobid FROM %s t "
				   "  WHERE " LA_FINISHED " AND t.started_at < $1 "
				   "    AND t.started_at + coalesce(t.duration, '0') < $1 "
				   "  ORDER BY t.started_at LIMIT %d FOR UPDATE OF t SKIP LOCKED)",
				   p->cat.tasks_name, p->cat.tasks_name, LA_HISTORY_BATCH);
	la_bk_pin_ordered_walk();
	rc = SPI_execute_plan(la_queue_plan(&la_expire_plan, p->cat.tasks, sql, 1, types),
						  values, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "lantern_async could not delete finished tasks: %s", SPI_result_code_string(rc));
	c->deleted = (int64) SPI_processed;
}

typedef struct LaOldest
{
	TimestampTz oldest;			/* earliest finish left; 0: none */
} LaOldest;

/*
 * In submit order, the earliest finish is found as soon as the next row was
 * submitted after the best finish so far (a row finishes after its submit):
 * usually after the first row.
 */
static void
la_history_oldest_body(LaPrivileged *p, void *arg)
{
	LaOldest   *c = arg;
	Portal		cursor;
	bool		done = false;

	/* Through the index, never a sort of every finished row (each scout does this). */
	la_bk_pin_ordered_walk();
	cursor = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT t.started_at, t.started_at + coalesce(t.duration, '0') "
												"FROM %s t WHERE " LA_FINISHED " ORDER BY t.started_at",
												p->cat.tasks_name),
									   0, NULL, NULL, NULL, true, 0);
	c->oldest = 0;
	while (!done)
	{
		SPI_cursor_fetch(cursor, true, 64);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed && !done; i++)
		{
			bool		isnull;
			TimestampTz submitted = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			TimestampTz finished = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

			if (c->oldest != 0 && submitted >= c->oldest)
				done = true;
			else if (c->oldest == 0 || finished < c->oldest)
				c->oldest = finished;
		}
	}
	SPI_cursor_close(cursor);
}

/*
 * Delete one batch of what is due (nothing without a retention); *deleted
 * counts the rows gone, LA_HISTORY_BATCH when there may be more.
 */
bool
la_history_expire_batch(int64_t *deleted, LaError *err)
{
	LaExpire	batch = {GetCurrentTimestamp() - (int64) la_history_retention * USECS_PER_SEC, 0};

	*deleted = 0;
	if (la_history_retention <= 0)
		return true;
	if (!la_bk_run(la_history_expire_body, &batch, err))
		return false;
	*deleted = batch.deleted;
	return true;
}

/* Leave the earliest finish left here with the launcher (history.c). */
bool
la_history_note_oldest(LaError *err)
{
	TimestampTz cutoff = GetCurrentTimestamp() - (int64) la_history_retention * USECS_PER_SEC;
	LaOldest	left = {0};
	/* Before the look's snapshot: a later note is kept (loader/state/history.c). */
	uint64		look = la_history_look();

	if (!la_bk_run(la_history_oldest_body, &left, err))
		return false;
	/* Still due: the rest is locked by someone; the launcher waits before it asks again. */
	la_history_set(MyDatabaseId, left.oldest,
				   la_history_retention > 0 && left.oldest != 0 && left.oldest < cutoff, look);
	return true;
}
