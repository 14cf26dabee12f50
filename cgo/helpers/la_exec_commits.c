/*
 * la_exec_commits.c - whether a task has committed any of its work
 *
 * A task's query string may commit several transactions: COMMIT in the
 * string, or statements that commit on their own (CREATE INDEX
 * CONCURRENTLY, VACUUM).  A failure after one of them must never be
 * retried from the start: that work would be done twice.  A transaction
 * counts once it has written something (it has a transaction ID) and its
 * commit went through, or once it was prepared (PREPARE TRANSACTION: its
 * work may commit later, from another session).  A read-only transaction
 * changed nothing, so a retry after one is safe.
 */
#include "postgres.h"

#include "access/xact.h"

#include "la_exec.h"

static void
la_exec_commit_callback(XactEvent event, void *arg)
{
	if (!la_run.active)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* The ID is still there now; the commit may yet fail (ABORT follows). */
			la_run.committing = TransactionIdIsValid(GetTopTransactionIdIfAny());
			break;
		case XACT_EVENT_COMMIT:
			la_run.committed |= la_run.committing;
			la_run.committing = false;
			break;
		case XACT_EVENT_PRE_PREPARE:
			la_run.committed |= TransactionIdIsValid(GetTopTransactionIdIfAny());
			break;
		case XACT_EVENT_ABORT:
			la_run.committing = false;
			break;
		default:
			break;
	}
}

/* Register the callback once per process. */
void
la_exec_watch_commits(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(la_exec_commit_callback, NULL);
		registered = true;
	}
}
