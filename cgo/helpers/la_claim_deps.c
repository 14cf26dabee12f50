/*
 * la_claim_deps.c - a claim decides a task that has dependencies
 *
 * The claim's pick (la_claim_due.c) locks a due task of the role; when it
 * has dependencies (task_owners.depends), they are read here, in the same
 * transaction, with the latest snapshot, each locked FOR SHARE unless
 * another transaction holds it (SKIP LOCKED: a claim never waits on a lock
 * a user can hold).  Then, in this order:
 *
 *   one failed, canceled, or gone   the task fails (55000), naming it
 *   one locked by another           due again a little later (a backoff)
 *   one pending or running          waiting: out of the claims' queue
 *   all succeeded                   claimed, as any task
 *
 * A waiting task keeps the dependencies' rows locked FOR SHARE until this
 * claim commits, so their final status (an UPDATE of those rows) waits
 * for the commit, and its own statement that queues the waiting dependents
 * again (loader/tables/dependencies.c) sees this one: none is stranded.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "la_call.h"
#include "tables/la_tables.h"

/* How a task's dependencies stand, read by la_deps_read. */
typedef struct LaDepsState
{
	int64		ended;			/* the first failed, canceled or gone, 0: none */
	const char *why;			/* how it ended: "failed", "was canceled", "no longer exists" */
	bool		held;			/* one is locked by another transaction */
	bool		unfinished;		/* one is pending or running (or has no status) */
} LaDepsState;

/*
 * Its dependencies, with the status of those this claim locked FOR SHARE
 * (NULL with locked false: another transaction holds it), and whether
 * each still exists.  The locked ones reach the lock as one array, found
 * through the primary key (queue.c says why).  No ORDER BY: sorts are
 * penalized in the claim (la_bk_pin_ordered_walk), and a plan that costly
 * would be compiled by JIT, for most of a second, at every claim.
 */
static char *
la_deps_read_sql(const LaCatalog *cat)
{
	return psprintf("WITH deps AS ("
					"  SELECT d.depends_on FROM %s d WHERE d.jobid = $1), "
					"locked AS ("
					"  SELECT t.jobid, t.status FROM %s t "
					"  WHERE t.jobid = ANY ((SELECT array_agg(depends_on) FROM deps)::bigint[]) "
					"  FOR SHARE OF t SKIP LOCKED) "
					"SELECT d.depends_on, l.status, l.jobid IS NOT NULL, "
					"       EXISTS (SELECT FROM %s e WHERE e.jobid = d.depends_on) "
					"FROM deps d LEFT JOIN locked l ON l.jobid = d.depends_on",
					cat->task_dependencies_name, cat->tasks_name, cat->tasks_name);
}

static void
la_deps_note(LaDepsState *st, int64 dependency, const char *status, bool locked, bool present)
{
	const char *why = NULL;

	if (!present)
		why = "no longer exists";
	else if (locked && status != NULL && strcmp(status, "failed") == 0)
		why = "failed";
	else if (locked && status != NULL && strcmp(status, "canceled") == 0)
		why = "was canceled";
	else if (!locked)
		st->held = true;
	else if (status == NULL || strcmp(status, "succeeded") != 0)
		st->unfinished = true;
	/* The lowest jobid, whatever the order of the rows (no sort: la_bk_pin_ordered_walk) */
	if (why != NULL && (st->ended == 0 || dependency < st->ended))
	{
		st->ended = dependency;
		st->why = why;
	}
}

/*
 * The latest snapshot, as READ COMMITTED would take for the statement: a
 * dependency that ended after this claim's snapshot is seen ended.
 */
static LaDepsState
la_deps_read(const LaCatalog *cat, int64 jobid)
{
	static LaSavedPlan plan;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(jobid)};
	LaDepsState st = {0, NULL, false, false};
	int			rc;

	rc = SPI_execute_snapshot(la_queue_plan(&plan, cat->tasks, la_deps_read_sql(cat), 1, types),
							  values, NULL, GetLatestSnapshot(), InvalidSnapshot, false, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "lantern_async could not read the dependencies of task " INT64_FORMAT ": %s",
			 jobid, SPI_result_code_string(rc));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		la_deps_note(&st, DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull)),
					 SPI_getvalue(row, desc, 2),
					 DatumGetBool(SPI_getbinval(row, desc, 3, &isnull)),
					 DatumGetBool(SPI_getbinval(row, desc, 4, &isnull)));
	}
	return st;
}

/* A dependency ended without succeeding: the task never runs, and says which one. */
static void
la_deps_fail(const LaCatalog *cat, int64 jobid, const LaDepsState *st)
{
	LaSettle	s = {0};

	s.jobid = jobid;
	s.from_status = "pending";
	s.to_status = "failed";
	s.sqlstate = "55000";
	/* psql's rendering, as the workers and the scouts write theirs */
	s.message = psprintf("ERROR:  task " INT64_FORMAT ", which this task depends on, %s\n"
						 "DETAIL:  A task runs only after every task in its depends_on has succeeded.",
						 st->ended, st->why);
	if (la_queue_settle(cat, &s) != 1)
		elog(ERROR, "lantern_async could not fail task " INT64_FORMAT, jobid);
}

/*
 * Waiting (later 0): out of the claims' queue until a dependency's end
 * puts it back.  Held by another transaction (a final status or a claim
 * under way, a user's uncommitted cancel_task()): due again after a
 * backoff that grows with the task's age, from 10 ms to 10 s, so that
 * neither a busy loop nor a long wait follows a short-held lock.
 */
static void
la_deps_defer(const LaCatalog *cat, int64 jobid, TimestampTz later)
{
	static LaSavedPlan plans[2];	/* [later] */
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int64GetDatum(jobid), TimestampTzGetDatum(later)};
	int			rc;

	rc = SPI_execute_plan(la_queue_plan(&plans[later != 0], cat->tasks,
										later == 0
										? psprintf("UPDATE %s o SET due = NULL WHERE o.jobid = $1",
												   cat->task_owners_name)
										: psprintf("UPDATE %s o SET due = $2 + least(greatest("
												   "    ($2 - t.started_at) / 100, interval '10 ms'), interval '10 s') "
												   "FROM %s t WHERE o.jobid = $1 AND t.jobid = $1",
												   cat->task_owners_name, cat->tasks_name),
										later == 0 ? 1 : 2, types),
						  values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "lantern_async could not requeue task " INT64_FORMAT ": %s", jobid,
			 SPI_result_code_string(rc));
}

/*
 * Decide the task jobid, picked and locked by this claim, whose owner row
 * says it has dependencies.  True: all succeeded, and it is claimed now
 * (SPI_tuptable holds its row, as the pick would have); false: it failed,
 * waits, or is due later, and the claim picks again.
 */
bool
la_bk_claim_deps(const LaCatalog *cat, int64 jobid, TimestampTz now)
{
	static LaSavedPlan ready;
	LaDepsState st = la_deps_read(cat, jobid);
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(jobid)};
	int			rc;

	if (st.ended != 0)
	{
		la_deps_fail(cat, jobid, &st);
		return false;
	}
	if (st.held || st.unfinished)
	{
		la_deps_defer(cat, jobid, st.held ? now : 0);
		return false;
	}
	rc = SPI_execute_plan(la_queue_plan_generic(&ready, cat->tasks, la_bk_claim_ready_sql(cat), 1, types),
						  values, NULL, false, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "lantern_async could not claim task " INT64_FORMAT ": %s", jobid,
			 SPI_result_code_string(rc));
	return true;
}
