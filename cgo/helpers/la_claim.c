/*
 * la_claim.c - a worker claims the next task of its role
 *
 * One bookkeeping transaction (la_bookkeeping.c) records the previous
 * task's outcome, if its own commit did not, and claims the oldest pending
 * task of the role this worker logged in as; the slot names the task
 * before the claim commits (loader/state/slot_job.c), and the demand board
 * stays true (loader/state/demand.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "la_call.h"
#include "base/la_compat.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

typedef struct LaClaim
{
	int			slot;
	const LaSettle *finished;	/* recorded first, in the same commit; NULL: none */
	uint32_t	finished_relid;
	LaClaimed  *out;
	bool		refused;		/* the slot is retiring or the settings changed: the claim rolled back */
	int64		named;			/* the jobid the slot names since la_slot_set_job, 0: none */
	LaSlotJob	prior;			/* what the slot named before */
	TimestampTz next_due;		/* found nothing due: when the next task may start, 0: none */
	int			decided;		/* tasks with dependencies it decided without claiming them */
	bool		more;			/* decided LA_CLAIM_DECISIONS tasks and claimed none: claim again */
} LaClaim;

/*
 * How many tasks with dependencies one claim transaction may decide
 * without claiming one (la_claim_deps.c) before it commits and the next
 * claim goes on: each decided task leaves a dead entry in the queue's
 * index that this transaction's later picks walk past again, so a
 * thousand decisions in one transaction would cost half a million steps.
 * Once committed, the next walk marks them dead for good.
 */
#define LA_CLAIM_DECISIONS 32

/* The claim's saved plans (loader/tables/queue.c says why). */
static LaSavedPlan la_claim_plans[4];	/* 0.2.0, 0.3.0 (timeout), 0.4.0 (timeout, datid), 0.5.0 (due) */

/*
 * The claim's statement, for the tables' version: with_timeout from 0.3.0
 * on, with_datid from 0.4.0 on.
 *
 * The owner is a correlated scalar subquery on purpose: it cannot be
 * turned into a join, so the plan can walk the pending rows in jobid
 * order (the partial index) and stop at the first of this role; a join
 * could hash all the rows the role ever submitted for every claim.
 */
static char *
la_bk_claim_sql(const LaCatalog *cat, bool with_timeout, bool with_datid)
{
	return psprintf("UPDATE %s u SET status = 'running' "
					"WHERE u.status = 'pending' AND u.jobid = ("
					"  SELECT t.jobid FROM %s t "
					"  WHERE t.status = 'pending' "
					"    AND (SELECT o.roleid FROM %s o WHERE o.jobid = t.jobid%s) = $1 "
	/* dropped (or, on 15, NOLOGIN) since this worker logged in: a scout fails its tasks */
					"    AND EXISTS (SELECT FROM pg_catalog.pg_authid r "
					"                WHERE r.oid = $1 AND " LA_ROLE_LOGIN_SQL ") "
					"  ORDER BY t.jobid LIMIT 1 FOR UPDATE OF t SKIP LOCKED) "
					"RETURNING u.jobid, u.query%s",
					cat->tasks_name, cat->tasks_name, cat->task_owners_name,
					with_datid ? " AND o.datid = $2" : "",
					with_timeout ? psprintf(", (SELECT o.timeout FROM %s o WHERE o.jobid = u.jobid)",
											cat->task_owners_name) : "");
}

/* The row the claim took: the slot names it, then the worker gets its query. */
static void
la_bk_claim_take(LaClaim *c, LaPrivileged *p, bool with_timeout)
{
	HeapTuple	row = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;

	int64		jobid = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));

	/*
	 * The board's hint drops before the slot shows the task: the
	 * launcher, which reads both, must never see this worker busy while
	 * the task still counts as waiting, or it would start another
	 * worker for it.
	 */
	la_demand_claimed(MyDatabaseId, GetAuthenticatedUserId());
	/* Role or database settings changed since login: a new session takes it (la_settings.c). */
	if (!la_settings_current() ||
		!la_slot_set_job(c->slot, jobid, p->cat.tasks, c->finished != NULL, &c->prior))
	{
		c->refused = la_bk_rollback = true;
		return;
	}
	c->named = jobid;
	c->out->jobid = jobid;
	c->out->query = MemoryContextStrdup(la_result_context(),
									TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull)));
	if (with_timeout)
	{
		Datum		timeout = SPI_getbinval(row, desc, 3, &isnull);

		/* NULL is none; async_task refuses one that is not positive */
		if (!isnull)
			c->out->timeout_us = Max(la_interval_usecs(DatumGetIntervalP(timeout)), 0);
	}
	/* From 0.5.0 on: which attempt this is, and how many may follow the first. */
	if (desc->natts >= 5)
	{
		c->out->attempt = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
		c->out->retries = DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
	}
	c->out->tasks_relid = p->cat.tasks;
	/* Flushed whatever synchronous_commit the role has: a claim a crash forgot could run twice. */
	ForceSyncCommit();
}

/*
 * A task the pick took that has dependencies (from 0.5.0 on, the last
 * column) is not claimed by it: la_claim_deps.c decides it, and claims it
 * when they all succeeded.  True: it did not, and the claim picks again;
 * false: the pick's result stands, or (c->more) the claim ends here.
 */
static bool
la_bk_claim_passed(LaClaim *c, LaPrivileged *p, TimestampTz now)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;

	if (SPI_processed != 1 || desc->natts < 7)
		return false;
	/* An ended task's entry, dropped by the pick: pick again, as after a decision. */
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], desc, 7, &isnull)))
	{
		c->decided++;
		if (c->decided < LA_CLAIM_DECISIONS)
			return true;
		c->more = true;
		return false;
	}
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], desc, 6, &isnull)))
		return false;
	/* Left as it is, due: the next claim picks it first. */
	if (c->decided == LA_CLAIM_DECISIONS)
	{
		c->more = true;
		return false;
	}
	if (la_bk_claim_deps(&p->cat, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], desc, 1, &isnull)),
						 now))
		return false;
	c->decided++;
	return true;
}

/*
 * Claim the oldest pending task of the role this worker logged in as (by
 * OID, from task_owners).  The slot learns the jobid before the claim
 * commits, so that from the moment the row reads 'running' the launcher
 * and cancel_task() can tell which process owns it.  The previous task's
 * outcome, when its own commit did not record it, goes in first: one WAL
 * flush for both.  (The slot names the new task a moment before that
 * outcome commits; the row stays locked by this transaction meanwhile, so
 * a scout's orphan sweep, which skips locked rows, cannot take it.)
 */
static void
la_bk_claim_body(LaPrivileged *p, void *arg)
{
	LaClaim    *c = arg;
	TimestampTz now;
	Oid			types[3] = {OIDOID, OIDOID, TIMESTAMPTZOID};
	Datum		values[3] = {ObjectIdGetDatum(GetAuthenticatedUserId()), ObjectIdGetDatum(MyDatabaseId), 0};
	/*
	 * 0.2.0 has no per-task timeouts; from 0.4.0 on only tasks submitted
	 * in this database (not a copy's) run here; from 0.5.0 on the task due
	 * the longest goes first, from the claims' queue (la_claim_due.c).
	 */
	LaOwnerColumns cols = la_queue_columns(&p->cat);
	int			shape = cols.due ? 3 : cols.datid ? 2 : cols.timeout ? 1 : 0;
	/* $1 the role; $2 the database from 0.4.0 on; $3 the claim's clock from 0.5.0 on */
	int			nargs = cols.due ? 3 : cols.datid ? 2 : 1;
	int			rc;

	if (c->finished != NULL &&
		(c->finished_relid == 0 || c->finished_relid == p->cat.tasks) &&
		la_queue_settle(&p->cat, c->finished) > 0)
		ForceSyncCommit();

	/*
	 * And only an ordered walk can stop there: a plan chosen on statistics
	 * that saw an empty queue would fetch every pending row, check each
	 * one's owner and sort them, for every claim (quadratic in a burst).
	 * The clock is read once, after the outcome, so that the dependents it
	 * queued again are due; a task a pick puts back for later
	 * (la_claim_deps.c) is then never picked again by this claim, and the
	 * dependents of one it fails are noted on the board at its commit, for
	 * the next claim.
	 */
	la_bk_pin_ordered_walk();
	now = GetCurrentTimestamp();
	values[2] = TimestampTzGetDatum(now);
	do
	{
		rc = SPI_execute_plan(la_queue_plan_generic(&la_claim_plans[shape], p->cat.tasks,
													cols.due ? la_bk_claim_due_sql(&p->cat)
													: la_bk_claim_sql(&p->cat, cols.timeout, cols.datid),
													nargs, types),
							  values, NULL, false, 0);
		if (rc != (cols.due ? SPI_OK_SELECT : SPI_OK_UPDATE_RETURNING))
			elog(ERROR, "lantern_async could not claim a task: %s", SPI_result_code_string(rc));
	} while (la_bk_claim_passed(c, p, now));
	if (c->more)
		return;
	if (SPI_processed == 0 && !la_worker_can_run_as(GetAuthenticatedUserId()))
	{
		/* The role's pending tasks can never run now: a scout fails them. */
		la_demand_note(MyDatabaseId, InvalidOid, 0);
		return;
	}
	if (SPI_processed == 1)
		la_bk_claim_take(c, p, cols.timeout);
	else if (cols.due)
		c->next_due = la_bk_next_due(&p->cat, now);
}

/*
 * The claim failed after its slot named the task (an error in the rest of
 * the body or in the commit): the slot must stop naming it before the
 * abort releases the row, which is pending again from then on.  Until that
 * release the row is locked by this transaction, so no other worker can
 * claim it (SKIP LOCKED), cancel_task() waits for it, and a scout's orphan
 * sweep does not see it running (the claim never committed): at no moment
 * do two slots name the task, nor does a slot name a task that is pending
 * and free.  Left naming it, the slot would hand it to a scout when this
 * worker exits on the error, and the scout could fail it while another
 * worker runs it.  (An error after the commit cannot happen: la_bk_close
 * only switches memory context after it, and a failure once the commit
 * record is written is a PANIC, which resets shared memory.)
 */
static void
la_bk_claim_undo(void *arg)
{
	LaClaim    *c = arg;

	if (c->named != 0)
		la_slot_unset_job(c->slot, c->named, &c->prior);
}

/*
 * Claim the next task, keeping the demand board true (loader/state/demand.c): the entry
 * is marked looked-at before the claim's snapshot, and removed only when a
 * claim found nothing and no submit noted work since; otherwise claim again.
 * out->jobid 0 means nothing to claim, or the slot is retiring; finished
 * (NULL: none) is recorded by the first claim, or alone when that claim is
 * refused; either way its task is done on return, and on an error it is
 * not recorded.
 */
bool
la_bk_claim(int slot, const LaSettle *finished, uint32_t finished_relid, LaClaimed *out,
			LaError *err)
{
	Oid			roleid = GetAuthenticatedUserId();

	for (;;)
	{
		LaClaim		c = {.slot = slot, .finished = finished, .finished_relid = finished_relid, .out = out};

		memset(out, 0, sizeof(*out));
		out->attempt = 1;
		la_demand_looking(MyDatabaseId, roleid);
		if (!la_bk_run_undoable(la_bk_claim_body, la_bk_claim_undo, &c, err))
		{
			/* The task it had found stays pending, for another worker. */
			if (c.named != 0)
				la_demand_note(MyDatabaseId, roleid, 1);
			return false;
		}
		if (c.refused)
		{
			int64_t		count;

			/* The task stays pending for another worker. */
			la_demand_note(MyDatabaseId, roleid, 1);
			if (finished == NULL)
				return true;
			if (!la_bk_settle(finished, finished_relid, &count, err))
				return false;
			la_slot_task_done(slot);
			return true;
		}
		/* Committed: what it decided counts as work (la_slot_tasks_decided). */
		if (c.decided > 0)
			la_slot_tasks_decided(slot, c.decided);
		if (finished != NULL && out->jobid == 0)
			la_slot_task_done(slot);
		finished = NULL;
		if (out->jobid != 0)
			return true;
		if (c.more)
			continue;
		/* Nothing due: the entry stays for the launcher if a task is due later. */
		if (la_demand_settled(MyDatabaseId, roleid, c.next_due))
			return true;
	}
}
