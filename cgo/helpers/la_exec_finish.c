/*
 * la_exec_finish.c - the end of a task: the code of its own that COMMIT
 * would run, run while it can still be stopped, then its point of no
 * return (from there on a cancel_task() is too late), then its success
 * written into the transaction that commits its work
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"

#include "la_call.h"
#include "la_exec.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

/* Write the task's success into the transaction about to commit its work. */
static void
la_exec_record_success(void)
{
	LaPrivileged p;
	LaSettle	s = {
		.jobid = la_run.jobid,
		.from_status = "running",
		.to_status = "succeeded",
		.attempt = la_run.attempt,
		.attempt_started = la_run.attempt_started,
	};

	/*
	 * Only if the queue's table can be locked at once: waiting here (with
	 * the bookkeeping's lock timeout) could fail the task's own transaction
	 * because of a lock on the queue; the worker loop records the outcome
	 * after the commit instead.
	 */
	if (!ConditionalLockRelationOid(la_run.tasks_relid, RowExclusiveLock))
		return;
	PushActiveSnapshot(GetTransactionSnapshot());
	la_privileged_begin(&p, RowExclusiveLock);
	if (p.installed && p.cat.tasks == la_run.tasks_relid)
		la_run.recorded = la_queue_settle(&p.cat, &s) == 1;
	la_privileged_end(&p);
	PopActiveSnapshot();
}

/*
 * The task's own code that COMMIT would run, run now, while the time limit
 * and a cancel can still stop it: deferred triggers, and the queries of
 * WITH HOLD cursors, which COMMIT runs to their end to keep their rows.
 * Each may queue more of the other (a cursor's query inserting into a
 * table with a deferred trigger, a trigger declaring a cursor), so this
 * loops as CommitTransaction does, until neither has anything left; the
 * COMMIT that follows then finds nothing of either to run.  What it still
 * runs is not user code: ON COMMIT DELETE ROWS and DROP of temporary
 * tables, closing large objects, the extension's bookkeeping and
 * PostgreSQL's own (and any other extension's pre-commit callbacks).
 */
static void
la_exec_run_commit_user_code(void)
{
	for (;;)
	{
		AfterTriggerFireDeferred();
		/* Persists held cursors, drops the others, as COMMIT would. */
		if (!PreCommit_Portals(false))
			break;
	}
}

/*
 * Called once the last statement has run, in the transaction that will
 * commit the end of the task's work: from here on a cancel_task() is too
 * late (and says so), and an accepted one stops the task now.  What COMMIT
 * still runs after this is the extension's own work and PostgreSQL's
 * (see la_exec_run_commit_user_code).  The success is recorded in this
 * same transaction, so that 'succeeded' and the work commit together or
 * not at all, even across a crash; where it cannot be or need not be
 * (below), the worker loop records it after the session's reset.
 */
void
la_exec_finish_task(void)
{
	if (!la_run.active || la_run.finishing)
		return;

	la_exec_run_commit_user_code();

	/*
	 * The limit covers the task's own work, up to here: from now on its
	 * outcome is being decided.  One that passed a moment ago, before its
	 * cancel was processed, still stops the task.
	 */
	la_exec_disarm_limit();
	if (la_exec_limit_passed())
		la_exec_limit_error(NULL);
	if (!la_slot_begin_finishing(la_run.slot, la_run.jobid))
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling statement due to user request")));
	la_run.finishing = true;

	/*
	 * Not in a read-only transaction (it cannot write), nor in a
	 * serializable one: an update of the queue there would enter the
	 * task's serialization graph, and concurrent serializable tasks would
	 * fail (40001) because of the bookkeeping rather than their own work.
	 * Nor when the transaction wrote nothing (no xid): it has no work to
	 * commit with the success, and its commit flushes no WAL, so the next
	 * claim records the success in its own flush (one per task, not two).
	 */
	if (!XactReadOnly && !IsolationIsSerializable() &&
		TransactionIdIsValid(GetTopTransactionIdIfAny()))
		la_exec_record_success();
}
