/*
 * dependencies.c - the tasks a task waits for (depends_on, from 0.5.0 on)
 *
 * A submit checks the jobids it names (as the caller: only tasks it can
 * see, in this database) and records them in task_dependencies; it locks
 * none of them, so no process of ours ever waits on a user's open submit.
 * Every decision is a claim's (helpers/la_claim_deps.c), made after the
 * commits it depends on.  A task that a claim found waiting leaves the
 * claims' queue (task_owners.due NULL, depends still set); each final
 * status (queue.c) puts the dependents waiting on the tasks that ended
 * back in it, due now, and notes them on the demand board at commit, for
 * a claim to decide again.
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "storage/bufmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "tables/la_tables.h"
#include "state/la_state.h"

/* The same error for a jobid that does not exist and one the caller may not name. */
static void
la_dependencies_not_found(int64 jobid)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("task " INT64_FORMAT " named in depends_on does not exist", jobid),
			 errdetail("A task can depend only on tasks its role can see in lantern.tasks, in this database.")));
}

static Datum
la_dependencies_array(const int64 *jobids, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(jobids[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * Fail on the first of jobids (sorted, distinct) that the statement's
 * result (a column of jobids, in any order) lacks.
 */
static void
la_dependencies_require_all(const int64 *jobids, int n, uint64 found)
{
	bool	   *seen = palloc0(sizeof(bool) * Max(n, 1));

	for (uint64 r = 0; r < found; r++)
	{
		bool		isnull;
		int64		jobid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
														SPI_tuptable->tupdesc, 1, &isnull));
		int			lo = 0,
					hi = n - 1;

		while (lo <= hi)
		{
			int			mid = (lo + hi) / 2;

			if (jobids[mid] == jobid)
			{
				seen[mid] = true;
				break;
			}
			if (jobids[mid] < jobid)
				lo = mid + 1;
			else
				hi = mid - 1;
		}
	}
	for (int i = 0; i < n; i++)
		if (!seen[i])
			la_dependencies_not_found(jobids[i]);
}

/*
 * The jobids the caller sees in lantern.tasks, read as the caller in its
 * own transaction, so that lantern.tasks' row security decides (a
 * superuser or a BYPASSRLS role sees every task).  Not read-only: a fresh
 * snapshot, as the next statement would take, sees a task queued by the
 * same statement (async_task(q, depends_on => ARRAY[async_task(p)])).  In a subtransaction: a caller
 * whose SELECT on the table (or USAGE on its schema) was revoked sees
 * none, and gets the same error as for a jobid that does not exist.
 * Returns how many rows SPI_tuptable holds; -1 when the caller may not read.
 */
static int64
la_dependencies_read_visible(const LaCatalog *cat, Datum jobids)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {jobids};
	volatile int64 found = -1;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		/* The operator is named: the caller's search_path must not choose it. */
		if (SPI_execute_with_args(psprintf("SELECT t.jobid FROM %s t "
										   "WHERE t.jobid OPERATOR(pg_catalog.=) ANY ($1)",
										   cat->tasks_name),
								  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "lantern_async could not read the tasks named in depends_on");
		found = (int64) SPI_processed;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		if (geterrcode() != ERRCODE_INSUFFICIENT_PRIVILEGE)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return found;
}

/*
 * Called as the caller, before the switch to the bootstrap superuser:
 * every one of jobids (sorted, distinct, n > 0) must be a task the caller
 * can see in lantern.tasks, or the submit fails, saying nothing of
 * whether it exists.
 */
void
la_dependencies_check_visible(const LaCatalog *cat, const int64 *jobids, int n)
{
	int64		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	found = la_dependencies_read_visible(cat, la_dependencies_array(jobids, n));
	if (found < 0)
		la_dependencies_not_found(jobids[0]);
	la_dependencies_require_all(jobids, n, (uint64) found);
	SPI_finish();
}

/*
 * As the bootstrap superuser, with the new task's rows inserted: every
 * dependency must have been submitted in this database (a database copy's
 * inherited rows name another), then one row per dependency.
 */
void
la_dependencies_record(const LaCatalog *cat, int64 jobid, const int64 *jobids, int n)
{
	Oid			types[3] = {INT8ARRAYOID, OIDOID, INT8OID};
	Datum		values[3] = {la_dependencies_array(jobids, n), ObjectIdGetDatum(MyDatabaseId),
	Int64GetDatum(jobid)};

	if (cat->task_dependencies_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" must be updated before tasks can have dependencies",
						LA_EXTENSION_NAME),
				 errhint("Run ALTER EXTENSION %s UPDATE.", LA_EXTENSION_NAME)));
	if (SPI_execute_with_args(psprintf("SELECT o.jobid FROM %s o "
									   "WHERE o.jobid = ANY ($1) AND o.datid = $2",
									   cat->task_owners_name),
							  2, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "lantern_async could not read the tasks named in depends_on");
	la_dependencies_require_all(jobids, n, SPI_processed);
	if (SPI_execute_with_args(psprintf("INSERT INTO %s (jobid, depends_on) "
									   "SELECT $3, d FROM pg_catalog.unnest($1) d",
									   cat->task_dependencies_name),
							  3, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "lantern_async could not record the dependencies of a task");
}

/*
 * No task has ever had a dependency here: task_dependencies has no page.
 * A dependent left waiting was read by the claim that left it so, which
 * the status update waited for: its page exists by now.  (VACUUM gives
 * pages back only once no row is left on them.)
 */
static bool
la_dependencies_none(const LaCatalog *cat)
{
	Relation	rel = relation_open(cat->task_dependencies, AccessShareLock);
	bool		none = RelationGetNumberOfBlocks(rel) == 0;

	relation_close(rel, AccessShareLock);
	return none;
}

/*
 * Those still pending and waiting for the settled tasks, locked, and then
 * queued again.  A cancel_task() of one leaves its waiting row unlocked
 * (queue.c), so an open cancel does not keep it from the queue: should
 * the cancel roll back, a claim decides it; should it commit, a claim
 * drops the entry of the canceled task.  One locked by another
 * transaction is left alone: only another settle's requeue holds it, and
 * queues it itself (or, rolled back, the dependency it settled has not
 * ended, and its end will).  The update tests nothing but the locked
 * jobids (queue.c says why).
 */
static char *
la_dependencies_requeue_sql(const LaCatalog *cat)
{
	return psprintf("WITH waiting AS ("
					"  SELECT o.jobid FROM %s o "
					"  WHERE o.jobid = ANY ((SELECT pg_catalog.array_agg(d.jobid) FROM %s d "
					"                        WHERE d.depends_on = ANY ($1))::bigint[]) "
					"    AND o.due IS NULL AND o.depends "
					"    AND EXISTS (SELECT FROM %s t WHERE t.jobid = o.jobid AND t.status = 'pending') "
					"  FOR UPDATE OF o SKIP LOCKED) "
					"UPDATE %s o SET due = $2 "
					"WHERE o.jobid = ANY ((SELECT pg_catalog.array_agg(jobid) FROM waiting)::bigint[]) "
					"RETURNING o.roleid, o.datid",
					cat->task_owners_name, cat->task_dependencies_name, cat->tasks_name,
					cat->task_owners_name);
}

/*
 * The tasks jobids (a bigint[]) just got their final status: put the
 * dependents that a claim found waiting for them (due NULL, depends set)
 * back in the claims' queue, due now, for a claim to decide.  Run after
 * the status update, as a statement of its own with the latest snapshot:
 * a claim that found a dependent waiting held the task's row FOR SHARE,
 * so the update waited for that claim to commit, and this statement sees
 * the dependent it left waiting (the task's own transaction may be
 * REPEATABLE READ, whose snapshot would not).  Called for every final
 * status, each trivial task's success too: nothing at all in a database
 * where no task ever had a dependency, else one saved plan, one probe of
 * task_dependencies_depends_on_idx.  A copy's dependents (another datid)
 * never run here, and are not noted.
 */
void
la_dependencies_requeue(const LaCatalog *cat, Datum jobids)
{
	static LaSavedPlan plan;
	Oid			types[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
	Datum		values[2] = {jobids, TimestampTzGetDatum(GetCurrentTimestamp())};
	int			rc;

	if (la_dependencies_none(cat))
		return;
	rc = SPI_execute_snapshot(la_queue_plan(&plan, cat->tasks, la_dependencies_requeue_sql(cat), 2, types),
							  values, NULL, GetLatestSnapshot(), InvalidSnapshot, false, true, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "lantern_async could not queue the dependents of a task: %s",
			 SPI_result_code_string(rc));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		HeapTuple	row = SPI_tuptable->vals[r];

		if (DatumGetObjectId(SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull)) == MyDatabaseId)
			la_demand_note_at_commit(DatumGetObjectId(SPI_getbinval(row, SPI_tuptable->tupdesc, 1,
																	&isnull)), 0);
	}
	SPI_freetuptable(SPI_tuptable); /* a cancel of many tasks requeues once per batch */
}
