/*
 * queue.c - the one statement that gives tasks their final status
 *
 * Used by the workers (an outcome), the scouts (lost tasks, refused roles,
 * tasks left running by a restart) and the cancel functions (pending tasks):
 * every final write records the status, error_message and duration once,
 * the SQLSTATE beside them in task_errors.  Runs in la_privileged_begin/end.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int128.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "tables/la_tables.h"
#include "state/la_state.h"

/*
 * From 0.5.0 on, a task that leaves pending leaves the claims' queue
 * (task_owners.due) in the same statement; a task leaving running is not
 * in it (its claim took it out), so the statement for those has no such
 * part.  Its row there is locked after the task's own, as the claim locks
 * them: no deadlock between the two.  No test of due here: with one, the
 * planner could walk the queue's partial index and match every entry
 * against the whole array (100,000 cancels took 15 s instead of 1).
 */
static bool
la_queue_leaves_pending(const LaSettle *s)
{
	return s->from_status != NULL && strcmp(s->from_status, "pending") == 0;
}

static const char *
la_queue_unqueue_sql(const LaCatalog *cat, const LaSettle *s, bool one)
{
	if (!la_queue_leaves_pending(s) || !la_queue_has_due(cat))
		return "";
	/*
	 * A task waiting for its dependencies (due NULL, depends) is not in
	 * the queue: its row is left alone, unlocked, so that a dependency's
	 * end can queue it again while this settle's transaction is open; if
	 * that transaction rolls back, the task is decided then, and if it
	 * commits, a claim drops the ended task's entry (la_claim_due.c).
	 * Written so that no partial index matches it (see above).
	 */
	return psprintf(", unqueued AS ("
					"  UPDATE %s o SET due = NULL, depends = false "
					"  WHERE %s AND (o.due IS NOT NULL OR NOT o.depends))",
					cat->task_owners_name,
					one ? "o.jobid = $1 AND EXISTS (SELECT FROM settled)" : "o.jobid = ANY ($1)");
}

/*
 * Only rows still in from_status change, so each task gets one outcome.
 * With a batch, at most that many: the statement's arrays and its
 * RETURNING rows are held in memory until it ends, so a caller that
 * settles any number of tasks (cancel_all_async_tasks) repeats it instead.
 * With skip_locked, rows another transaction holds (a cancel_task() not yet
 * committed, a claim under way) are left for a later call: the extension's
 * own processes never wait on a lock a user can hold.
 *
 * Two statements: this one locks the rows and returns their jobids as one
 * array, and la_queue_settle_locked_sql writes them.  The array reaches the
 * writes as a parameter of a statement planned for it, that is as a
 * constant: the planner knows its size, and a scan it filters looks each
 * row up in a hash of it.  Computed inside one statement, it was a run-time
 * value the planner took for ten elements, from a nearly empty queue's
 * statistics: a join with it became a nested loop over a scan (10,000
 * fresh tasks canceled in 23 s, 100,000 in hours), and = ANY of it a scan
 * that compared every row with every element (100,000 canceled in 46 s on
 * a busy machine instead of 3).
 */
static char *
la_queue_lock_rows_sql(const LaCatalog *cat, const LaSettle *s)
{
	return psprintf("SELECT array_agg(l.jobid) FROM ("
					"  SELECT t.jobid FROM %s t"
					"  WHERE t.status = $4 AND ($1 IS NULL OR t.jobid = $1)"
					"    AND ($2 = 0 OR EXISTS (SELECT FROM %s o WHERE o.jobid = t.jobid AND o.roleid = $2))"
					"    AND (NOT $3 OR NOT EXISTS (SELECT FROM %s o WHERE o.jobid = t.jobid))"
					"    AND ($5 IS NULL OR t.jobid = ANY ($5)) AND ($6 IS NULL OR t.jobid <> ALL ($6))"
					"  LIMIT $7 FOR UPDATE OF t%s) l",
					cat->tasks_name, cat->task_owners_name, cat->task_owners_name,
					s->skip_locked ? " SKIP LOCKED" : "");
}

/*
 * The rows la_queue_lock_rows_sql locked ($1): no status test, as they
 * were locked in from_status (FOR UPDATE rechecks the newest version), and
 * the test would let the planner match the pending rows' partial index
 * against the whole array.
 */
static char *
la_queue_settle_locked_sql(const LaCatalog *cat, const LaSettle *s)
{
	return psprintf("WITH settled AS ("
					"  UPDATE %s t SET status = $2, error_message = $3, "
					"         duration = clock_timestamp() - t.started_at "
					"  WHERE t.jobid = ANY ($1) "
					"  RETURNING t.jobid), "
					"recorded AS ("
					"  INSERT INTO %s (jobid, sqlstate) "
					"  SELECT jobid, $4 FROM settled WHERE $4 IS NOT NULL)%s "
					"SELECT count(*), array_agg(jobid) FROM settled",
					cat->tasks_name, cat->task_errors_name, la_queue_unqueue_sql(cat, s, false));
}

/* The jobids of the tasks 'running' now; palloc'd. */
int
la_queue_running(const LaCatalog *cat, int64 **jobids)
{
	int			rc;

	rc = SPI_execute(psprintf("SELECT jobid FROM %s WHERE status = 'running'", cat->tasks_name),
					 true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "lantern_async could not read the running tasks: %s", SPI_result_code_string(rc));
	*jobids = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		(*jobids)[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1,
												   &isnull));
	}
	return (int) SPI_processed;
}

/*
 * la_queue_settle_rows's saved plans (statements.c): the lock [with SKIP
 * LOCKED], the writes [leaving pending].  Always planned for the
 * parameters at hand: which of the lock's filters apply is decided by
 * them, and a generic plan can use none of the indexes
 * (cancel_all_async_tasks() retrying one row by its jobid read the whole
 * table each time); the writes' array is a constant (see above).
 */
static LaSavedPlan la_lock_rows_plans[2];
static LaSavedPlan la_settle_locked_plans[2];

/*
 * The common case, one task by jobid (an outcome, a cancel): a statement
 * whose generic plan is as good as a custom one, so that its saved plan is
 * not planned again for every task.
 */
static char *
la_queue_settle_one_sql(const LaCatalog *cat, const LaSettle *s)
{
	return psprintf("WITH settled AS ("
					"  UPDATE %s t SET status = $3, error_message = $4, "
					"         duration = clock_timestamp() - t.started_at "
					"  WHERE t.jobid = $1 AND t.status = $2 "
					"  RETURNING t.jobid), "
					"recorded AS ("
					"  INSERT INTO %s (jobid, sqlstate) "
					"  SELECT jobid, $5 FROM settled WHERE $5 IS NOT NULL)%s%s "
					"SELECT count(*) FROM settled",
					cat->tasks_name, cat->task_errors_name, la_queue_unqueue_sql(cat, s, true),
					la_queue_attempt_sql(cat, s));
}

static bool
la_queue_settles_one(const LaSettle *s)
{
	return !s->all_jobs && !OidIsValid(s->roleid) && !s->unowned && !s->skip_locked &&
		s->only == NULL && s->except == NULL;
}

static int64
la_queue_settle_one(const LaCatalog *cat, const LaSettle *s)
{
	/* [0] from running, [1] from pending (unqueued), [2] from running with an attempt's row */
	static LaSavedPlan plans[3];
	bool		pending = la_queue_leaves_pending(s);
	bool		attempt = la_queue_records_attempt(cat, s);
	Oid			types[8] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID,
	TIMESTAMPTZOID};
	Datum		values[8];
	char		nulls[9] = "        ";
	bool		isnull;
	int			rc;

	values[0] = Int64GetDatum(s->jobid);
	values[1] = la_queue_text(s->from_status, &nulls[1]);
	values[2] = la_queue_text(s->to_status, &nulls[2]);
	values[3] = la_queue_text(s->message, &nulls[3]);
	values[4] = la_queue_text(s->sqlstate, &nulls[4]);
	if (attempt)
		la_queue_attempt_args(s, &values[5], &nulls[5]);
	rc = la_queue_run(la_queue_plan(&plans[attempt ? 2 : pending], cat->tasks,
									la_queue_settle_one_sql(cat, s), attempt ? 8 : 5, types),
					  values, nulls, s->latest_snapshot);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "lantern_async could not update the status of a task: %s",
			 SPI_result_code_string(rc));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * The jobids of the rows la_queue_settle_rows locks (a bigint[]; *none: no
 * row), in *rows, which the caller frees once it has used them.
 */
static Datum
la_queue_lock_rows(const LaCatalog *cat, const LaSettle *s, bool *none, SPITupleTable **rows)
{
	Oid			types[7] = {INT8OID, OIDOID, BOOLOID, TEXTOID, INT8ARRAYOID, INT8ARRAYOID, INT8OID};
	Datum		values[7];
	char		nulls[8] = "       ";
	int			rc;

	values[0] = Int64GetDatum(s->jobid);
	nulls[0] = s->all_jobs ? 'n' : ' ';
	values[1] = ObjectIdGetDatum(s->roleid);
	values[2] = BoolGetDatum(s->unowned);
	values[3] = la_queue_text(s->from_status, &nulls[3]);
	values[4] = la_queue_jobid_array(s->only, s->nonly, &nulls[4]);
	values[5] = la_queue_jobid_array(s->except, s->nexcept, &nulls[5]);
	/* LIMIT NULL: no limit */
	values[6] = Int64GetDatum(s->batch);
	nulls[6] = s->batch > 0 ? ' ' : 'n';
	rc = la_queue_run(la_queue_plan_custom(&la_lock_rows_plans[s->skip_locked], cat->tasks,
										   la_queue_lock_rows_sql(cat, s), 7, types),
					  values, nulls, s->latest_snapshot);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "lantern_async could not lock the tasks to update: %s",
			 SPI_result_code_string(rc));
	*rows = SPI_tuptable;
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, none);
}

/* *settled: the jobids that changed status (a bigint[]), when more than one may have. */
static int64
la_queue_settle_rows(const LaCatalog *cat, const LaSettle *s, Datum *settled)
{
	Oid			types[4] = {INT8ARRAYOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[5] = "    ";
	bool		isnull;
	bool		none;
	bool		pending = la_queue_leaves_pending(s);
	SPITupleTable *locked;
	int			rc;

	if (la_queue_settles_one(s))
		return la_queue_settle_one(cat, s);
	values[0] = la_queue_lock_rows(cat, s, &none, &locked);
	if (none)
	{
		SPI_freetuptable(locked);
		*settled = (Datum) 0;
		return 0;
	}
	values[1] = la_queue_text(s->to_status, &nulls[1]);
	values[2] = la_queue_text(s->message, &nulls[2]);
	values[3] = la_queue_text(s->sqlstate, &nulls[3]);
	rc = la_queue_run(la_queue_plan_custom(&la_settle_locked_plans[pending], cat->tasks,
										   la_queue_settle_locked_sql(cat, s), 4, types),
					  values, nulls, s->latest_snapshot);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "lantern_async could not update the status of tasks: %s",
			 SPI_result_code_string(rc));
	SPI_freetuptable(locked);	/* values[0] pointed into it: a cancel repeats this in batches */
	*settled = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* A status no task leaves: its dependents may be decided. */
static bool
la_queue_is_final(const char *status)
{
	return status != NULL && (strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
							  strcmp(status, "canceled") == 0);
}

/*
 * Returns how many tasks changed status; their waiters (state/waiters.c) are woken
 * when the transaction commits.
 */
int64
la_queue_settle(const LaCatalog *cat, const LaSettle *s)
{
	Datum		settled = (Datum) 0;
	SPITupleTable *result;
	int64		n;

	/* Not finished: its waiters keep waiting, and its dependents too. */
	if (la_queue_is_retry(s))
		return la_queue_retry(cat, s);
	n = la_queue_settle_rows(cat, s, &settled);
	result = SPI_tuptable;

	if (n > 0)
		la_wait_note_finished(!s->all_jobs && s->only == NULL ? s->jobid : 0);
	/* From 0.5.0 on: the tasks waiting for these may be decided now (dependencies.c). */
	if (n > 0 && OidIsValid(cat->task_dependencies) && la_queue_is_final(s->to_status))
	{
		char		null;

		if (settled == (Datum) 0)
			settled = la_queue_jobid_array(&s->jobid, 1, &null);
		la_dependencies_requeue(cat, settled);
	}
	/* Its rows (settled with them) would last until SPI_finish: a caller may repeat it. */
	SPI_freetuptable(result);
	return n;
}

/* Read a task's status and owner, without locking anything. */
LaTaskState
la_queue_read_task(const LaCatalog *cat, int64 jobid)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(jobid)};
	LaTaskState state = {false, NULL, InvalidOid};
	int			rc;

	rc = la_queue_execute(psprintf("SELECT t.status, o.roleid FROM %s t "
								   "LEFT JOIN %s o ON o.jobid = t.jobid WHERE t.jobid = $1",
								   cat->tasks_name, cat->task_owners_name),
						  1, types, values, NULL, true);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not look up task " INT64_FORMAT, jobid);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		owner;

		state.found = true;
		state.status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		owner = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		state.owner = isnull ? InvalidOid : DatumGetObjectId(owner);
	}
	return state;
}
