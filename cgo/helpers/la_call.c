/*
 * la_call.c - error capture, thread guard and memory contexts for the C
 * helpers that Go calls
 */
#include "postgres.h"

#include <pthread.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "la_call.h"
#include "base/la_compat.h"

static pthread_t la_main_thread;
static MemoryContext la_result_cxt = NULL;
static MemoryContext la_task_cxt = NULL;

/*
 * Called once from the Go entry point, on PostgreSQL's main thread.  Returns
 * false (the error is logged) when even this failed, e.g. out of memory.
 */
bool
la_call_init(void)
{
	volatile bool ok = true;

	la_main_thread = pthread_self();
	PG_TRY();
	{
		la_result_cxt = AllocSetContextCreate(TopMemoryContext,
											  "lantern_async results",
											  ALLOCSET_DEFAULT_SIZES);
		la_task_cxt = AllocSetContextCreate(TopMemoryContext,
											"lantern_async task",
											ALLOCSET_DEFAULT_SIZES);
		MemoryContextSwitchTo(la_task_cxt);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

MemoryContext
la_result_context(void)
{
	return la_result_cxt;
}

MemoryContext
la_task_context(void)
{
	return la_task_cxt;
}

/*
 * Everything one task allocates between transactions lives here, the way
 * MessageContext serves one query in a normal backend; reset it between
 * tasks so nothing accumulates in TopMemoryContext.
 */
void
la_reset_task_context(void)
{
	MemoryContextSwitchTo(la_task_cxt);
	MemoryContextReset(la_task_cxt);
}

/*
 * Start one of the extension's own transactions: the bookkeeping, the reset
 * between tasks, the launcher's look.  A role's (or database's)
 * transaction_timeout limits its tasks, not these: one it ended mid-claim
 * would leave the task pending for good.  It is lifted before any statement
 * can check for interrupts.
 */
void
la_own_transaction_start(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	la_lift_transaction_timeout();
}

static char *
la_copy_field(const char *value)
{
	return value ? MemoryContextStrdup(la_result_cxt, value) : NULL;
}

/*
 * Start of every helper: refuse calls from the wrong thread (a goroutine
 * that is not the one pinned to PostgreSQL's thread) and clear the previous
 * call's results.
 */
bool
la_call_begin(LaError *err)
{
	memset(err, 0, sizeof(*err));
	if (!pthread_equal(pthread_self(), la_main_thread))
	{
		err->elevel = ERROR;
		strlcpy(err->sqlstate, "XX000", sizeof(err->sqlstate));
		err->message = "lantern_async called PostgreSQL from a thread other than the main thread";
		return false;
	}
	MemoryContextReset(la_result_cxt);
	return true;
}

void
la_save(LaSaved *saved)
{
	saved->holdoff = InterruptHoldoffCount;
	saved->cancel_holdoff = QueryCancelHoldoffCount;
	saved->context = CurrentMemoryContext;
}

void
la_restore(const LaSaved *saved)
{
	InterruptHoldoffCount = saved->holdoff;
	QueryCancelHoldoffCount = saved->cancel_holdoff;
	MemoryContextSwitchTo(saved->context);
}

/* Log the error as a backend would; if even that fails, the copy is all we keep. */
static void
la_call_log_error(void)
{
	PG_TRY();
	{
		EmitErrorReport();
	}
	PG_CATCH();
	{
		/* e.g. out of memory while formatting the log line */
	}
	PG_END_TRY();
}

/*
 * PG_CATCH body of every helper.  Copy the error out first (the copy
 * survives whatever logging does), log it, flush it, then abort whatever
 * transaction is open: a task may have left BEGIN open, so
 * AbortCurrentTransaction would not be enough.
 */
void
la_call_fail(LaError *err, const LaSaved *saved)
{
	la_call_fail_logged(err, saved, true);
}

/* The same; logged false leaves the logging to the caller (la_bk_run). */
void
la_call_fail_logged(LaError *err, const LaSaved *saved, bool logged)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(la_result_cxt);
	edata = CopyErrorData();
	if (logged)
		la_call_log_error();
	FlushErrorState();

	err->elevel = edata->elevel;
	strlcpy(err->sqlstate, unpack_sql_state(edata->sqlerrcode), sizeof(err->sqlstate));
	err->message = la_copy_field(edata->message);
	err->detail = la_copy_field(edata->detail);
	err->hint = la_copy_field(edata->hint);
	err->context = la_copy_field(edata->context);
	err->internalquery = la_copy_field(edata->internalquery);
	err->cursorpos = edata->cursorpos;
	err->internalpos = edata->internalpos;

	AbortOutOfAnyTransaction();
	InterruptHoldoffCount = saved->holdoff;
	QueryCancelHoldoffCount = saved->cancel_holdoff;
	/* Not saved->context: it may have belonged to the transaction just aborted. */
	MemoryContextSwitchTo(la_task_cxt);
}
