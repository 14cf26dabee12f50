/*
 * la_bookkeeping.c - the queue in lantern.tasks, through SPI
 *
 * Every helper is one short transaction of fixed SQL, run through
 * la_privileged_begin/end (the bootstrap superuser, pinned settings)
 * whatever session it runs in: a task's role may be read-only by default,
 * have a lock_timeout, or own objects in its search_path, and none of that
 * may break or hijack the bookkeeping.  The tables are the extension's own,
 * found through pg_depend (loader/tables/catalog.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "la_call.h"
#include "base/la_compat.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

/* Set by a body whose transaction must roll back rather than commit. */
static bool la_bk_rollback = false;

/*
 * Cancel interrupts are held throughout: a cancel aimed at a task must
 * never break a claim or a result.
 */
static void
la_bk_open(LaPrivileged *p)
{
	HOLD_CANCEL_INTERRUPTS();
	la_own_transaction_start();
	XactIsoLevel = XACT_READ_COMMITTED;
	XactReadOnly = false;
	PushActiveSnapshot(GetTransactionSnapshot());
	la_privileged_begin(p, RowExclusiveLock);
}

static void
la_bk_close(LaPrivileged *p)
{
	la_privileged_end(p);
	PopActiveSnapshot();
	if (la_bk_rollback)
		AbortCurrentTransaction();
	else
		CommitTransactionCommand();
	MemoryContextSwitchTo(la_task_context());
	RESUME_CANCEL_INTERRUPTS();
}

typedef void (*la_bk_undo) (void *arg);

/*
 * Run body in a bookkeeping transaction; body is skipped when the extension
 * is not installed.  On an error, undo (NULL: none) runs first, while the
 * transaction still holds its locks.  The queue's table found locked
 * (55P03, loader/tables/catalog.c: our processes never wait for it) is not
 * logged here: it is expected while a user's lock request waits, the
 * caller tries again later, and the worker says once that it gave up
 * (bgworker.Worker.record).
 */
static bool
la_bk_run_undoable(la_bk_body body, la_bk_undo undo, void *arg, LaError *err)
{
	LaPrivileged p;
	LaSaved		saved;
	volatile bool ok = true;

	if (!la_call_begin(err))
		return false;
	la_reset_task_context();
	la_save(&saved);
	la_bk_rollback = false;
	PG_TRY();
	{
		la_bk_open(&p);
		if (p.installed)
			body(&p, arg);
		la_bk_close(&p);
	}
	PG_CATCH();
	{
		if (undo != NULL)
			undo(arg);
		la_call_fail_logged(err, &saved, geterrcode() != ERRCODE_LOCK_NOT_AVAILABLE);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

bool
la_bk_run(la_bk_body body, void *arg, LaError *err)
{
	return la_bk_run_undoable(body, NULL, arg, err);
}

/*
 * The next statement walks an index in its order instead of sorting what
 * it reads, whatever the statistics say (a sort penalized, not forbidden).
 * Pinned where its saved plan is (re)planned, until la_privileged_end.
 */
void
la_bk_pin_ordered_walk(void)
{
	(void) set_config_option("enable_sort", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
la_bk_ready_body(LaPrivileged *p, void *arg)
{
	*(bool *) arg = true;
}

bool
la_bk_ready(bool *ready, LaError *err)
{
	*ready = false;
	return la_bk_run(la_bk_ready_body, ready, err);
}

typedef struct LaClaim
{
	int			slot;
	const LaSettle *finished;	/* recorded first, in the same commit; NULL: none */
	uint32_t	finished_relid;
	int64_t    *jobid;
	char	  **query;
	int64_t    *timeout_us;		/* the task's own timeout, 0: none */
	uint32_t   *tasks_relid;
	bool		refused;		/* the slot is retiring or the settings changed: the claim rolled back */
	int64		named;			/* the jobid the slot names since la_slot_set_job, 0: none */
	LaSlotJob	prior;			/* what the slot named before */
} LaClaim;

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
static LaSavedPlan la_claim_plans[3];	/* 0.2.0, 0.3.0 (timeout), 0.4.0 (timeout, datid) */

static void
la_bk_claim_body(LaPrivileged *p, void *arg)
{
	LaClaim    *c = arg;
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2] = {ObjectIdGetDatum(GetAuthenticatedUserId()), ObjectIdGetDatum(MyDatabaseId)};
	/* A database still at 0.2.0 has no per-task timeouts. */
	bool		with_timeout = la_queue_has_timeout(&p->cat);
	/* From 0.4.0 on, only tasks submitted in this database (not a copy's) run here. */
	bool		with_datid = with_timeout && la_queue_has_datid(&p->cat);
	char	   *sql;
	int			rc;

	if (c->finished != NULL &&
		(c->finished_relid == 0 || c->finished_relid == p->cat.tasks) &&
		la_queue_settle(&p->cat, c->finished) > 0)
		ForceSyncCommit();

	/*
	 * The owner is a correlated scalar subquery on purpose: it cannot be
	 * turned into a join, so the plan can walk the pending rows in jobid
	 * order (the partial index) and stop at the first of this role; a join
	 * could hash all the rows the role ever submitted for every claim.
	 */
	sql = psprintf("UPDATE %s u SET status = 'running' "
				   "WHERE u.status = 'pending' AND u.jobid = ("
				   "  SELECT t.jobid FROM %s t "
				   "  WHERE t.status = 'pending' "
				   "    AND (SELECT o.roleid FROM %s o WHERE o.jobid = t.jobid%s) = $1 "
	/* dropped (or, on 15, NOLOGIN) since this worker logged in: a scout fails its tasks */
				   "    AND EXISTS (SELECT FROM pg_catalog.pg_authid r "
				   "                WHERE r.oid = $1 AND " LA_ROLE_LOGIN_SQL ") "
				   "  ORDER BY t.jobid LIMIT 1 FOR UPDATE OF t SKIP LOCKED) "
				   "RETURNING u.jobid, u.query%s",
				   p->cat.tasks_name, p->cat.tasks_name, p->cat.task_owners_name,
				   with_datid ? " AND o.datid = $2" : "",
				   with_timeout ? psprintf(", (SELECT o.timeout FROM %s o WHERE o.jobid = u.jobid)",
										   p->cat.task_owners_name) : "");

	/*
	 * And only an ordered walk can stop there: a plan chosen on statistics
	 * that saw an empty queue would fetch every pending row, check each
	 * one's owner and sort them, for every claim (quadratic in a burst).
	 */
	la_bk_pin_ordered_walk();
	rc = SPI_execute_plan(la_queue_plan(&la_claim_plans[with_datid ? 2 : with_timeout ? 1 : 0],
										p->cat.tasks, sql, with_datid ? 2 : 1, types),
						  values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "lantern_async could not claim a task: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0 && !la_worker_can_run_as(GetAuthenticatedUserId()))
	{
		/* The role's pending tasks can never run now: a scout fails them. */
		la_demand_note(MyDatabaseId, InvalidOid, 0);
		return;
	}
	if (SPI_processed == 1)
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
		*c->jobid = jobid;
		*c->query = MemoryContextStrdup(la_result_context(),
										TextDatumGetCString(SPI_getbinval(row, desc, 2, &isnull)));
		if (with_timeout)
		{
			Datum		timeout = SPI_getbinval(row, desc, 3, &isnull);

			/* NULL is none; async_task refuses one that is not positive */
			if (!isnull)
				*c->timeout_us = Max(la_interval_usecs(DatumGetIntervalP(timeout)), 0);
		}
		*c->tasks_relid = p->cat.tasks;
		/* Flushed whatever synchronous_commit the role has: a claim a crash forgot could run twice. */
		ForceSyncCommit();
	}
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
 * *jobid 0 means nothing to claim, or the slot is retiring; *timeout_us is
 * the task's own time limit (0: none given).  finished (NULL:
 * none) is recorded by the first claim, or alone when that claim is refused;
 * either way its task is done on return, and on an error it is not recorded.
 */
bool
la_bk_claim(int slot, const LaSettle *finished, uint32_t finished_relid,
			int64_t *jobid, char **query, int64_t *timeout_us, uint32_t *tasks_relid,
			LaError *err)
{
	Oid			roleid = GetAuthenticatedUserId();

	for (;;)
	{
		LaClaim		c = {slot, finished, finished_relid, jobid, query, timeout_us, tasks_relid, false, 0};

		*jobid = 0;
		*query = NULL;
		*timeout_us = 0;
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
		if (finished != NULL && *jobid == 0)
			la_slot_task_done(slot);
		finished = NULL;
		if (*jobid != 0)
			return true;
		if (la_demand_settled(MyDatabaseId, roleid))
			return true;
	}
}

typedef struct LaSettleCall
{
	const LaSettle *settle;
	uint32_t	tasks_relid;
	int64_t    *count;
} LaSettleCall;

/*
 * A tasks_relid other than 0 must still be the current lantern.tasks: after
 * DROP and CREATE EXTENSION, a jobid of the old table may name a new task.
 */
static void
la_bk_settle_body(LaPrivileged *p, void *arg)
{
	LaSettleCall *c = arg;

	if (c->tasks_relid == 0 || c->tasks_relid == p->cat.tasks)
		*c->count = la_queue_settle(&p->cat, c->settle);
	/* An outcome, too, must not be lost to a crash after it was reported. */
	if (*c->count > 0)
		ForceSyncCommit();
}

bool
la_bk_settle(const LaSettle *settle, uint32_t tasks_relid, int64_t *count, LaError *err)
{
	LaSettleCall c = {settle, tasks_relid, count};

	*count = 0;
	return la_bk_run(la_bk_settle_body, &c, err);
}

typedef struct LaQueues
{
	LaQueueRow **rows;
	int		   *nrows;
} LaQueues;

static void
la_bk_queue_row(HeapTuple row, TupleDesc desc, LaQueueRow *q)
{
	bool		isnull;

	q->roleid = DatumGetObjectId(SPI_getbinval(row, desc, 1, &isnull));
	q->oldest_jobid = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
	q->pending = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
	q->role_exists = DatumGetBool(SPI_getbinval(row, desc, 4, &isnull));
	q->canlogin = DatumGetBool(SPI_getbinval(row, desc, 5, &isnull));
	q->username = MemoryContextStrdup(la_result_context(),
									  TextDatumGetCString(SPI_getbinval(row, desc, 6, &isnull)));
}

/* One row per role (by OID) with pending tasks, oldest first; roleid 0 for rows with no owner. */
static void
la_bk_queues_body(LaPrivileged *p, void *arg)
{
	LaQueues   *c = arg;
	int			rc;

	rc = SPI_execute(psprintf("SELECT coalesce(o.roleid, 0), min(t.jobid), count(*), "
							  "       r.oid IS NOT NULL, coalesce(" LA_ROLE_LOGIN_SQL ", false), min(t.username) "
							  "FROM %s t LEFT JOIN %s o ON o.jobid = t.jobid "
							  "LEFT JOIN pg_catalog.pg_authid r ON r.oid = o.roleid "
							  "WHERE t.status = 'pending' "
							  "GROUP BY o.roleid, r.oid, r.rolcanlogin ORDER BY 2",
							  p->cat.tasks_name, p->cat.task_owners_name),
					 false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "lantern_async could not read the queue: %s", SPI_result_code_string(rc));
	*c->nrows = (int) SPI_processed;
	*c->rows = MemoryContextAllocZero(la_result_context(), sizeof(LaQueueRow) * Max(*c->nrows, 1));
	for (int i = 0; i < *c->nrows; i++)
		la_bk_queue_row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, &(*c->rows)[i]);
}

bool
la_bk_queues(LaQueueRow **rows, int *nrows, LaError *err)
{
	LaQueues	c = {rows, nrows};

	*rows = NULL;
	*nrows = 0;
	return la_bk_run(la_bk_queues_body, &c, err);
}

typedef struct LaOrphans
{
	const LaSettle *settle;
	int64_t    *count;
} LaOrphans;

/*
 * Fail the tasks 'running' that no live slot of this database runs.  The
 * candidates are read first and the slots after: a task running in that
 * first snapshot had its claim committed before it, and a claim names its
 * task in the slot before it commits, so a live task is always in the
 * slots read afterwards.  (Reading the slots first could miss a claim that
 * committed in between.)
 */
static void
la_bk_fail_orphans_body(LaPrivileged *p, void *arg)
{
	LaOrphans  *c = arg;
	LaSettle	s = *c->settle;
	int			nslots = la_slot_count();
	int64	   *live = palloc(sizeof(int64) * (nslots + LA_LOST_MAX_VIEWS));

	s.nonly = la_queue_running(&p->cat, (int64 **) &s.only);
	if (s.nonly == 0)
		return;
	s.except = live;
	s.nexcept = la_slot_live_jobs(MyDatabaseId, live, nslots);
	/* Tasks in the lost list have an outcome of their own to get. */
	s.nexcept += la_lost_jobids(MyDatabaseId, live + s.nexcept, LA_LOST_MAX_VIEWS);
	s.all_jobs = true;
	s.skip_locked = true;
	s.latest_snapshot = true;
	s.from_status = "running";
	*c->count = la_queue_settle(&p->cat, &s);
	if (*c->count > 0)
		ForceSyncCommit();
}

bool
la_bk_fail_orphans(const LaSettle *settle, int64_t *count, LaError *err)
{
	LaOrphans	c = {settle, count};

	*count = 0;
	return la_bk_run(la_bk_fail_orphans_body, &c, err);
}

/* The database this process is connected to. */
uint32_t
la_bk_database(void)
{
	return (uint32_t) MyDatabaseId;
}
