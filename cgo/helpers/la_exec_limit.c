/*
 * la_exec_limit.c - a task's time limit
 *
 * One timer for the whole string, armed before its first statement and
 * disarmed at its point of no return, across every transaction the string
 * runs (COMMIT in the middle, CREATE INDEX CONCURRENTLY's own).  When it
 * passes it sends a query cancel, as statement_timeout does; a flag its
 * handler sets tells this cancel from an administrator's
 * pg_cancel_backend() (the same SIGINT), and the cancel_task() flag in the
 * slot from both (a cancel accepted there ends the task canceled whatever
 * stopped it).  A task can catch a cancel (an EXCEPTION WHEN query_canceled
 * in PL/pgSQL): the cancel is sent again every LA_LIMIT_REPEAT_MS until the
 * task ends, and a task that still reaches its end fails there
 * (la_exec_finish_task).
 */
#include "postgres.h"

#include <signal.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "la_call.h"
#include "la_exec.h"

#define LA_LIMIT_REPEAT_MS 1000

static TimeoutId la_limit_timeout;
static bool la_limit_registered = false;

/*
 * Set by the timer (a repeating timeout's own indicator is cleared each
 * time it is re-armed), cleared when a task's limit is armed or forgotten.
 */
static volatile sig_atomic_t la_limit_fired = false;

/*
 * As StatementTimeoutHandler: SIGINT to the whole process group, so that a
 * program the task started (COPY ... TO PROGRAM) is interrupted too.
 */
static void
la_exec_limit_handler(void)
{
	la_limit_fired = true;
#ifdef HAVE_SETSID
	kill(-MyProcPid, SIGINT);
#endif
	kill(MyProcPid, SIGINT);
}

/* Forget the previous task's limit: its timer and whether it passed. */
void
la_exec_clear_limit(void)
{
	if (la_limit_registered)
		disable_timeout(la_limit_timeout, false);
	la_limit_fired = false;
}

void
la_exec_arm_limit(void)
{
	TimestampTz now;

	if (la_run.limit_us <= 0)
		return;
	if (!la_limit_registered)
	{
		la_limit_timeout = RegisterTimeout(USER_TIMEOUT, la_exec_limit_handler);
		la_limit_registered = true;
	}
	la_limit_fired = false;
	now = GetCurrentTimestamp();
	/* A limit beyond the end of time is no limit. */
	if (la_run.limit_us > PG_INT64_MAX - now)
		return;
	enable_timeout_every(la_limit_timeout, now + la_run.limit_us, LA_LIMIT_REPEAT_MS);
}

/* Whether the task's limit has passed (its timer fired); the timer stays as it is. */
bool
la_exec_limit_passed(void)
{
	return la_run.limit_us > 0 && la_limit_fired;
}

/* Stop the timer; whether it fired is kept. */
void
la_exec_disarm_limit(void)
{
	if (la_limit_registered && get_timeout_active(la_limit_timeout))
		disable_timeout(la_limit_timeout, false);
}

/*
 * A limit as an interval reads in the default IntervalStyle ('postgres'),
 * hours carried into days: 00:00:02, 00:00:01.5, 1 day 12:00:00, 2 days.
 */
static char *
la_exec_format_limit(int64 usecs)
{
	StringInfoData buf;
	int64		days = usecs / USECS_PER_DAY;
	int64		rest = usecs % USECS_PER_DAY;

	initStringInfo(&buf);
	if (days > 0)
		appendStringInfo(&buf, INT64_FORMAT " day%s", days, days == 1 ? "" : "s");
	if (rest > 0 || days == 0)
	{
		int			frac = (int) (rest % USECS_PER_SEC);

		appendStringInfo(&buf, "%s%02d:%02d:%02d", days > 0 ? " " : "",
						 (int) (rest / USECS_PER_HOUR),
						 (int) (rest % USECS_PER_HOUR / USECS_PER_MINUTE),
						 (int) (rest % USECS_PER_MINUTE / USECS_PER_SEC));
		if (frac > 0)
		{
			char		digits[8];
			int			n;

			snprintf(digits, sizeof(digits), "%06d", frac);
			for (n = 6; digits[n - 1] == '0'; n--)
				;
			appendStringInfo(&buf, ".%.*s", n, digits);
		}
	}
	return buf.data;
}

/* The error of a task stopped by its time limit; context is the cancel's, or NULL. */
void
la_exec_limit_error(const char *context)
{
	char	   *limit = la_exec_format_limit(la_run.limit_us);

	if (la_run.limit_per_task)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling task due to task timeout"),
				 errdetail("The task ran for longer than its time limit of %s (the timeout given to lantern.async_task()).",
						   limit),
				 errhint("Submit the task again with a longer timeout."),
				 context ? (errcontext("%s", context)) : 0));
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("canceling task due to task timeout"),
			 errdetail("The task ran for longer than its time limit of %s (lantern_async.task_timeout).",
					   limit),
			 errhint("Raise lantern_async.task_timeout for the role or the database, "
					 "or give the task a timeout of its own in lantern.async_task()."),
			 context ? (errcontext("%s", context)) : 0));
}

/*
 * In la_exec's PG_CATCH, once the limit is known to have passed: the query
 * cancel it sent reads "canceling statement due to user request", so it is
 * replaced by the error that says what happened, keeping its context (where
 * the task was).  Any other error stays as it is.  The new error is left on
 * the error stack, for la_call_fail().
 */
void
la_exec_report_limit(void)
{
	MemoryContext oldcxt;
	ErrorData  *cancel;

	if (geterrcode() != ERRCODE_QUERY_CANCELED)
		return;
	oldcxt = MemoryContextSwitchTo(la_task_context());
	cancel = CopyErrorData();
	FlushErrorState();
	PG_TRY();
	{
		la_exec_limit_error(cancel->context);
	}
	PG_CATCH();
	{
		/* the new error, on the stack */
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
}
