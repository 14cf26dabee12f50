/*
 * statements.c - how the queue's statements are run: saved plans that
 * follow the tables' names, the snapshot they read with, their parameters
 *
 * Used by every file of this layer that writes the extension's tables
 * (queue.c, attempts.c, enqueue.c) and by the Go library's helpers.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int128.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "tables/la_tables.h"

/* A text parameter, NULL when value is. */
Datum
la_queue_text(const char *value, char *null)
{
	*null = value ? ' ' : 'n';
	return value ? CStringGetTextDatum(value) : (Datum) 0;
}

/* A bigint[] of jobids; NULL (no filter) when jobids is NULL. */
Datum
la_queue_jobid_array(const int64 *jobids, int n, char *null)
{
	Datum	   *elems;

	*null = jobids ? ' ' : 'n';
	if (jobids == NULL)
		return (Datum) 0;
	elems = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(jobids[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * Saved plans of the queue's hot statements, one per statement shape, for
 * the life of the process: a trivial task's claim and outcome otherwise
 * spent more time in the parser and planner than in the executor.
 *
 * A plan is used only for the text it was prepared from, which names the
 * tables as they are named now (catalog.c): after DROP and CREATE
 * EXTENSION, or a rename of the schema, the statement is prepared again
 * from the new text.  One that PostgreSQL has invalidated
 * meanwhile is prepared again too, rather than left to the plan cache,
 * which would analyze it again from its old text, resolving the old names
 * (as ri_triggers.c does for its own saved plans).  Should a name change
 * between here and the statement's run, sqlguard.c fails it.
 */
static SPIPlanPtr
la_queue_plan_with(LaSavedPlan *saved, Oid relid, const char *sql, int nargs, Oid *types,
				   int cursor_options)
{
	SPIPlanPtr	plan;

	if (saved->plan != NULL && saved->relid == relid && strcmp(saved->sql, sql) == 0 &&
		SPI_plan_is_valid(saved->plan))
		return saved->plan;
	plan = SPI_prepare_cursor(sql, nargs, types, cursor_options);
	if (plan == NULL)
		elog(ERROR, "lantern_async could not prepare a queue statement: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "lantern_async could not keep a queue statement's plan");
	if (saved->plan != NULL)
	{
		SPI_freeplan(saved->plan);
		pfree(saved->sql);
	}
	saved->plan = plan;
	saved->sql = MemoryContextStrdup(TopMemoryContext, sql);
	saved->relid = relid;
	return plan;
}

SPIPlanPtr
la_queue_plan(LaSavedPlan *saved, Oid relid, const char *sql, int nargs, Oid *types)
{
	return la_queue_plan_with(saved, relid, sql, nargs, types, 0);
}

/*
 * The same, for a statement whose plan must not depend on its parameters
 * (the claim's): planned once, with them unknown, and never again until
 * invalidated.  The plan cache would otherwise plan it anew at each of its
 * first five runs, and for good when the generic plan's estimate came out
 * above the custom ones' (a role with many tasks due later: "due <= $3"
 * guessed a third of them), each time probing the ends of the primary
 * keys for the join's estimates (get_actual_variable_range), through
 * whatever dead entries the claims left there.
 */
SPIPlanPtr
la_queue_plan_generic(LaSavedPlan *saved, Oid relid, const char *sql, int nargs, Oid *types)
{
	return la_queue_plan_with(saved, relid, sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);
}

/*
 * The same, for a statement whose filters its parameters switch on and off
 * ("$1 IS NULL OR t.jobid = $1"): planned anew for each run, with them
 * known, as its generic plan could use no index.
 */
SPIPlanPtr
la_queue_plan_custom(LaSavedPlan *saved, Oid relid, const char *sql, int nargs, Oid *types)
{
	return la_queue_plan_with(saved, relid, sql, nargs, types, CURSOR_OPT_CUSTOM_PLAN);
}

/*
 * Run one prepared statement of the queue.  With latest, it sees what
 * committed since the caller's snapshot, as READ COMMITTED would: a
 * cancel_task() called in a REPEATABLE READ transaction must find a task
 * that finished meanwhile finished, not fail to serialize.
 */
int
la_queue_run(SPIPlanPtr plan, Datum *values, const char *nulls, bool latest)
{
	if (!latest)
		return SPI_execute_plan(plan, values, nulls, false, 0);
	/* fire_triggers: the foreign keys of task_errors are checked at the end of the statement */
	return SPI_execute_snapshot(plan, values, nulls, GetLatestSnapshot(), InvalidSnapshot,
								false, true, 0);
}

/* Run a one-off statement of the queue (latest as for la_queue_run). */
int
la_queue_execute(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
				 bool latest)
{
	SPIPlanPtr	plan;

	if (!latest)
		return SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	plan = SPI_prepare(sql, nargs, types);
	if (plan == NULL)
		elog(ERROR, "lantern_async could not prepare a queue statement: %s",
			 SPI_result_code_string(SPI_result));
	return la_queue_run(plan, values, nulls, true);
}

/*
 * The length of an interval in microseconds, a month counting 30 days and a
 * day 24 hours (as interval comparison counts them: '1 mon' = '30 days'),
 * saturated at the ends of int64 (about 292,000 years).
 */
int64
la_interval_usecs(const Interval *span)
{
	INT128		usecs = int64_to_int128(span->time);

	int128_add_int64_mul_int64(&usecs, span->day, USECS_PER_DAY);
	int128_add_int64_mul_int64(&usecs, span->month, DAYS_PER_MONTH * USECS_PER_DAY);
	if (int128_compare(usecs, int64_to_int128(PG_INT64_MAX)) > 0)
		return PG_INT64_MAX;
	if (int128_compare(usecs, int64_to_int128(PG_INT64_MIN)) < 0)
		return PG_INT64_MIN;
	return int128_to_int64(usecs);
}
