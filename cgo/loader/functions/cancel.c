/*
 * cancel.c - lantern.cancel_task() and lantern.cancel_all_async_tasks()
 *
 * A pending task is marked canceled at once, in the caller's transaction.
 * A running one is stopped through its worker's slot
 * (state/slot_cancel.c): the cancel is accepted there, under the slot
 * lock, unless the worker has already begun committing the task's outcome;
 * an accepted cancel always ends the task canceled.  Neither path holds a row lock on a running task, so a
 * caller that keeps its transaction open blocks nobody.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/resowner.h"
#include "utils/builtins.h"

#include "tables/la_tables.h"
#include "state/la_state.h"

PG_FUNCTION_INFO_V1(lantern_async_cancel_task);
PG_FUNCTION_INFO_V1(lantern_async_cancel_all_tasks);

#define LA_CANCELED_MESSAGE "Canceled by user"
#define LA_CANCELED_SQLSTATE "57014"

/*
 * Same rule as pg_cancel_backend(): the task's role, a role with its
 * privileges, or a superuser.  Checked before anything is locked, and the
 * error names nobody: the caller may not even see the row.
 */
static void
la_cancel_check_permission(Oid caller, int64 jobid, Oid owner)
{
	if (superuser_arg(caller))
		return;
	if (OidIsValid(owner) && has_privs_of_role(caller, owner))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to cancel task " INT64_FORMAT, jobid),
			 errdetail("Only the role that submitted a task, a role with its privileges, or a superuser may cancel it.")));
}

static bool
la_status_is(const char *status, const char *want)
{
	return status != NULL && strcmp(status, want) == 0;
}

/* Pending tasks canceled per statement by cancel_all_async_tasks() */
#define LA_CANCEL_BATCH 10000

/* A settle that cancels pending tasks; the caller says which. */
static LaSettle
la_cancel_settle(void)
{
	LaSettle	s = {
		.latest_snapshot = true,
		.from_status = "pending",
		.to_status = "canceled",
		.message = LA_CANCELED_MESSAGE,
		.sqlstate = LA_CANCELED_SQLSTATE,
	};

	return s;
}

/*
 * Cancel one pending task.  This waits for a claim under way (a worker's
 * short transaction); the task is then running, and found in its worker's
 * slot.  But an UPDATE that waited keeps the row lock even when the row no
 * longer qualifies, until the caller's transaction ends, and the worker
 * must update that row when the task ends: so it runs in a subtransaction,
 * rolled back (lock and all) unless the task was canceled.
 */
static bool
la_cancel_one_pending(const LaCatalog *cat, int64 jobid)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		canceled;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		LaSettle	s = la_cancel_settle();

		s.jobid = jobid;
		canceled = la_queue_settle(cat, &s) == 1;
	}
	PG_CATCH();
	{
		/*
		 * An error (a statement timeout while the row was locked, say) must
		 * leave the caller's transaction as any failed statement does: end
		 * our subtransaction before the error goes up.
		 */
		MemoryContextSwitchTo(cxt);
		RollbackAndReleaseCurrentSubTransaction();
		CurrentResourceOwner = owner;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (canceled)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return canceled;
}

/* True when the task will end canceled; false when it does not exist or has finished. */
static bool
la_cancel_one(int64 jobid)
{
	LaPrivileged p;
	LaTaskState task;
	bool		canceled = false;

	la_privileged_begin(&p, RowExclusiveLock);
	la_privileged_require(&p);
	task = la_queue_read_task(&p.cat, jobid);
	if (task.found)
	{
		la_cancel_check_permission(p.caller, jobid, task.owner);
		if (la_status_is(task.status, "pending"))
		{
			/* A running task's cancel writes nothing; a pending one's does. */
			PreventCommandIfReadOnly("lantern.cancel_task()");
			canceled = la_cancel_one_pending(&p.cat, jobid);
			/* Not pending any more: a worker claimed it meanwhile. */
			if (!canceled)
				task = la_queue_read_task(&p.cat, jobid);
		}
		if (!canceled && la_status_is(task.status, "running"))
			canceled = la_slot_cancel_job(jobid, p.cat.tasks);
	}
	la_privileged_end(&p);
	return canceled;
}

Datum
lantern_async_cancel_task(PG_FUNCTION_ARGS)
{
	/* On a standby: say so, before any statement of ours fails on it. */
	PreventCommandDuringRecovery("lantern.cancel_task()");
	PG_RETURN_BOOL(la_cancel_one(PG_GETARG_INT64(0)));
}

/*
 * The pending tasks of the role (InvalidOid: of any) left after a pass,
 * among *left's nleft when *left is not NULL: rows another transaction
 * holds.  At most LA_CANCEL_BATCH of them, into *left (palloc'd).  LIMIT:
 * a count planned its EXISTS as a hash of every owner row of the role
 * (20 MB for 300,000 of them).
 */
static int
la_cancel_left(const LaCatalog *cat, Oid roleid, int64 **left, int nleft)
{
	Oid			types[2] = {OIDOID, INT8ARRAYOID};
	Datum		values[2] = {ObjectIdGetDatum(roleid)};
	char		nulls[3] = "  ";
	int64	   *found;

	values[1] = la_queue_jobid_array(*left, nleft, &nulls[1]);
	if (la_queue_execute(psprintf("SELECT t.jobid FROM %s t WHERE t.status = 'pending' "
								  "AND ($1 = 0 OR EXISTS (SELECT FROM %s o "
								  "                       WHERE o.jobid = t.jobid AND o.roleid = $1)) "
								  "AND ($2 IS NULL OR t.jobid = ANY ($2)) LIMIT %d",
								  cat->tasks_name, cat->task_owners_name, LA_CANCEL_BATCH),
						 2, types, values, nulls, true) != SPI_OK_SELECT)
		elog(ERROR, "could not look for the tasks left to cancel");
	found = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		found[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1,
											   &isnull));
	}
	nleft = (int) SPI_processed;
	SPI_freetuptable(SPI_tuptable);
	if (*left != NULL)
		pfree(*left);
	*left = found;
	return nleft;
}

/* Tries, 2 ms apart, for rows a claim under way holds (a claim takes a few ms). */
#define LA_CANCEL_ALL_TRIES 100

/*
 * The caller's own unfinished tasks; a superuser's: everybody's.  The
 * pending ones LA_CANCEL_BATCH at a time (each statement's memory is freed
 * before the next), then the slots for the running ones, so it takes time
 * in proportion to the tasks and the same memory whatever their number.  Rows
 * another transaction holds are skipped, never waited for (a lock kept
 * after waiting would stall the worker that claimed the row): such a row
 * is being claimed, and is tried again until it shows up in a slot, or is
 * being canceled by that other transaction, and is left to it.  The tries
 * again name those rows by jobid: a walk of the queue costs as many index
 * entries as it has dead ones, which an old snapshot keeps.
 */
Datum
lantern_async_cancel_all_tasks(PG_FUNCTION_ARGS)
{
	LaPrivileged p;
	LaSettle	s;
	int64	   *left = NULL;
	int			nleft;

	PreventCommandDuringRecovery("lantern.cancel_all_async_tasks()");
	PreventCommandIfReadOnly("lantern.cancel_all_async_tasks()");
	la_privileged_begin(&p, RowExclusiveLock);
	la_privileged_require(&p);
	s = la_cancel_settle();
	s.all_jobs = true;
	s.roleid = superuser_arg(p.caller) ? InvalidOid : p.caller;
	s.skip_locked = true;
	/* In batches: memory stays flat however many tasks there are. */
	s.batch = LA_CANCEL_BATCH;
	while (la_queue_settle(&p.cat, &s) == LA_CANCEL_BATCH)
		CHECK_FOR_INTERRUPTS();
	la_slot_cancel_role(s.roleid, p.cat.tasks);
	nleft = la_cancel_left(&p.cat, s.roleid, &left, 0);
	s.batch = 0;				/* the tries name at most LA_CANCEL_BATCH rows */
	for (int try = 1; try < LA_CANCEL_ALL_TRIES && nleft > 0; try++)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 2, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		s.only = left;
		s.nonly = nleft;
		(void) la_queue_settle(&p.cat, &s);
		la_slot_cancel_role(s.roleid, p.cat.tasks);
		nleft = la_cancel_left(&p.cat, s.roleid, &left, nleft);
	}
	la_privileged_end(&p);
	PG_RETURN_VOID();
}
