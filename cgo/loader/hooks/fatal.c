/*
 * fatal.c - a FATAL error that ends a worker during its task is the task's
 * outcome
 *
 * A task's ERROR is caught and recorded by its worker.  A FATAL one ends
 * the process at once: 17's transaction_timeout ("terminating connection
 * due to transaction timeout", 25P04), out of memory at the wrong moment.
 * The scout that settles the task afterwards would only know that the
 * process exited, so the error is parked with the worker's slot (state/slot_job.c)
 * before the process exits: the task ends 'failed' with that error and
 * SQLSTATE, as psql would show it.
 *
 * Not from emit_log_hook: errfinish() calls it only when the message goes
 * to the server log, so with log_min_messages = panic a FATAL never
 * reached it.  An error context callback at the bottom of the worker's
 * error_context_stack runs for every error that errstart() let through,
 * and errstart() always lets FATAL through, whatever is logged (PG_TRY
 * restores the stack to what it was, so it stays at the bottom).
 *
 * Errors that stop the worker from outside (pg_terminate_backend, a
 * shutdown, a dropped database) keep the usual outcome: the task's own
 * pg_terminate_backend, a cancel_task() that had to terminate, a restart.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "hooks/la_hooks.h"
#include "state/la_state.h"

static ErrorContextCallback la_fatal_callback;
static MemoryContext la_fatal_cxt = NULL;
static int	la_fatal_slot = -1;

/* Stopped from outside: the outcome is decided elsewhere. */
static bool
la_fatal_from_outside(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		sqlerrcode == ERRCODE_CRASH_SHUTDOWN ||
		sqlerrcode == ERRCODE_CANNOT_CONNECT_NOW ||
		sqlerrcode == ERRCODE_DATABASE_DROPPED;
}

/* "FATAL:  message", then DETAIL and HINT lines, as psql prints an error. */
static void
la_fatal_format(const ErrorData *edata, char *buf, size_t size)
{
	int			n = snprintf(buf, size, "FATAL:  %s", edata->message ? edata->message : "");

	if (edata->detail && n >= 0 && (size_t) n < size)
		n += snprintf(buf + n, size - n, "\nDETAIL:  %s", edata->detail);
	if (edata->hint && n >= 0 && (size_t) n < size)
		(void) snprintf(buf + n, size - n, "\nHINT:  %s", edata->hint);
}

/*
 * Runs while errfinish() reports an error or message: only during a task
 * does it copy the error (into a context of its own, reset at once; the
 * copy is how a callback learns the error's level), and it parks only a
 * FATAL one.  Messages below ERROR reach it only when they are logged.
 */
static void
la_fatal_context(void *arg)
{
	MemoryContext old;
	ErrorData  *edata;

	if (la_fatal_slot < 0 || !la_slot_names_job(la_fatal_slot))
		return;
	old = MemoryContextSwitchTo(la_fatal_cxt);
	edata = CopyErrorData();
	if (edata->elevel == FATAL && !la_fatal_from_outside(edata->sqlerrcode))
	{
		char		message[LA_PARKED_MESSAGE];

		la_fatal_format(edata, message, sizeof(message));
		la_slot_park_fatal(la_fatal_slot, unpack_sql_state(edata->sqlerrcode), message);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(la_fatal_cxt);
}

/* In a worker, once attached to its slot, before it connects. */
void
la_fatal_install_hook(int slot)
{
	la_fatal_cxt = AllocSetContextCreate(TopMemoryContext, "lantern_async fatal",
										 ALLOCSET_SMALL_SIZES);
	la_fatal_slot = slot;
	la_fatal_callback.callback = la_fatal_context;
	la_fatal_callback.arg = NULL;
	la_fatal_callback.previous = error_context_stack;
	error_context_stack = &la_fatal_callback;
}
