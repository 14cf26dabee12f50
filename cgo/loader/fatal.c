/*
 * fatal.c - a FATAL error that ends a worker during its task is the task's
 * outcome
 *
 * A task's ERROR is caught and recorded by its worker.  A FATAL one ends
 * the process at once: 17's transaction_timeout ("terminating connection
 * due to transaction timeout", 25P04), idle_session_timeout, out of memory
 * at the wrong moment.  The scout that settles the task afterwards would
 * only know that the process exited, so an emit_log_hook, which runs before
 * the process exits, parks the error with the worker's slot (slots.c): the
 * task ends 'failed' with that error and SQLSTATE, as psql would show it.
 *
 * Errors that stop the worker from outside (pg_terminate_backend, a
 * shutdown, a dropped database) keep the usual outcome: the task's own
 * pg_terminate_backend, a cancel_task() that had to terminate, a restart.
 */
#include "postgres.h"

#include "la_loader.h"
#include "la_shared.h"

static emit_log_hook_type prev_emit_log_hook = NULL;
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

/* Only copies into shared memory: nothing here may raise an error. */
static void
la_fatal_emit(ErrorData *edata)
{
	if (edata->elevel == FATAL && la_fatal_slot >= 0 && !la_fatal_from_outside(edata->sqlerrcode))
	{
		char		message[LA_PARKED_MESSAGE];

		la_fatal_format(edata, message, sizeof(message));
		la_slot_park_fatal(la_fatal_slot, unpack_sql_state(edata->sqlerrcode), message);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* In a worker, once attached to its slot. */
void
la_fatal_install_hook(int slot)
{
	la_fatal_slot = slot;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = la_fatal_emit;
}
