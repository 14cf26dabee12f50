/*
 * wait.c - lantern.wait_task(): sleep on the latch until a task finishes
 *
 * The waiter registers in the waiters' table (state/waiters.c) before it
 * reads the status, so a finish that commits in between still sets its
 * latch: no wake-up is lost.
 *
 * The waiter holds no snapshot while it sleeps (it commits between looks):
 * a CREATE INDEX CONCURRENTLY task waits for every transaction older than
 * its own snapshots, and would otherwise wait for its own waiter.  It also
 * commits once at its start, whatever the task's state, and refuses when
 * that commit would change its caller's transaction (wait_caller.c).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "common/int.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/dest.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "base/la_compat.h"
#include "functions/la_functions.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

PG_FUNCTION_INFO_V1(lantern_async_wait_task);

/*
 * Only a commit no code of ours sees (a superuser's own UPDATE of the
 * table) goes without a wake-up; the waiter looks again this often at most
 * in that case.
 */
#define LA_WAIT_RECHECK_MS 10000

/* What the caller's SELECT on lantern.tasks would show: its own rows, or all. */
static bool
la_wait_can_see(Oid caller, const LaCatalog *cat, Oid owner)
{
	if (pg_class_aclcheck(cat->tasks, caller, ACL_SELECT) != ACLCHECK_OK)
		return false;
	if (superuser_arg(caller) || has_bypassrls_privilege(caller))
		return true;
	return OidIsValid(owner) && owner == caller;
}

/* The task's status as the caller may see it, in cxt; NULL when it may not. */
static char *
la_wait_look(int64 jobid, MemoryContext cxt, bool *found)
{
	LaPrivileged p;
	LaTaskState task;
	char	   *status = NULL;

	*found = false;
	PushActiveSnapshot(GetTransactionSnapshot());
	la_privileged_begin(&p, AccessShareLock);
	if (p.installed)
	{
		task = la_queue_read_task(&p.cat, jobid);
		if (task.found && la_wait_can_see(p.caller, &p.cat, task.owner))
		{
			*found = true;
			if (task.status != NULL)
				status = MemoryContextStrdup(cxt, task.status);
		}
	}
	la_privileged_end(&p);
	PopActiveSnapshot();
	return status;
}

static bool
la_wait_finished(const char *status)
{
	return status != NULL &&
		(strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
		 strcmp(status, "canceled") == 0);
}

/*
 * The deadline of the wait, 0 for none: a NULL timeout, or one too long for
 * a timestamp (hundreds of thousands of years; 'infinity' on 17+, which
 * la_interval_usecs saturates).  Months count as 30 days, as in interval
 * comparison.
 */
static TimestampTz
la_wait_deadline(FunctionCallInfo fcinfo)
{
	int64		usec;
	TimestampTz deadline;

	if (PG_ARGISNULL(1))
		return 0;
	usec = la_interval_usecs(PG_GETARG_INTERVAL_P(1));
	if (usec < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	if (pg_add_s64_overflow(GetCurrentTimestamp(), usec, &deadline))
		return 0;
	return deadline;
}

/*
 * The backend's wait set on its client's socket (position 0), its latch
 * and postmaster death, from libpq/libpq.h, declared here: that header
 * includes libpq-be.h, which needs GSSAPI headers a build machine may lack.
 * Its socket position is the same in 15, 17 and 18.
 */
extern PGDLLIMPORT WaitEventSet *FeBeWaitSet;
#define LA_FEBE_SOCKET_POS 0

/*
 * Sleep on the latch for at most ms, watching the client's socket as
 * pq_check_connection() does: a client that has gone (a serverless
 * function killed at its time limit) ends the wait at once, as PostgreSQL
 * ends a statement whose client is lost, not after a task that may run for
 * hours.  Elsewhere (a task's worker) the latch alone.
 */
static void
la_wait_sleep(long ms)
{
	WaitEvent	event;

	if (FeBeWaitSet == NULL || whereToSendOutput != DestRemote || !WaitEventSetCanReportClosed())
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms, PG_WAIT_EXTENSION);
		return;
	}
	/* Every wait site of this set sets its socket events, so none is restored. */
	ModifyWaitEvent(FeBeWaitSet, LA_FEBE_SOCKET_POS, WL_SOCKET_CLOSED, NULL);
	if (WaitEventSetWait(FeBeWaitSet, ms, &event, 1, PG_WAIT_EXTENSION) != 1)
		return;
	if (event.events & WL_POSTMASTER_DEATH)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("terminating connection due to unexpected postmaster exit")));
	if (event.events & WL_SOCKET_CLOSED)
	{
		/* ProcessInterrupts() ends the session: "connection to client lost". */
		ClientConnectionLost = true;
		InterruptPending = true;
	}
}

/* Sleep until the status is final or the deadline (0: none) passes; a past deadline still looks once. */
static char *
la_wait_loop(int64 jobid, TimestampTz deadline, MemoryContext cxt)
{
	for (;;)
	{
		bool		found;
		char	   *status = la_wait_look(jobid, cxt, &found);
		long		sleep_ms = LA_WAIT_RECHECK_MS;

		if (!found || la_wait_finished(status))
			return status;
		if (deadline != 0)
		{
			long		secs;
			int			usecs;

			if (GetCurrentTimestamp() >= deadline)
				return status;
			TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
			sleep_ms = Min(sleep_ms, secs * 1000 + (usecs + 999) / 1000);
		}
		/* End the transaction, and with it the snapshot, before sleeping. */
		SPI_commit();
		la_wait_sleep(Max(sleep_ms, 1));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * CALL lantern.wait_task(jobid, timeout, NULL): the task's status once it
 * has finished, or its current one when timeout passes; NULL for a task
 * the caller cannot see.  A cancel of the waiter does not touch the task.
 */
Datum
lantern_async_wait_task(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	TupleDesc	desc;
	Datum		value;
	bool		isnull;
	char	   *status = NULL;
	TimestampTz deadline;

	PreventCommandDuringRecovery("lantern.wait_task()");
	la_wait_require_nonatomic(fcinfo);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "lantern.wait_task() must be declared with one OUT parameter");
	desc = BlessTupleDesc(CreateTupleDescCopy(desc));
	deadline = la_wait_deadline(fcinfo);
	la_wait_require_nothing_to_commit();

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect_ext failed");
	/* Always, before the first look: the caller's next statement runs in a new transaction. */
	SPI_commit();
	if (!PG_ARGISNULL(0))
	{
		int64		jobid = PG_GETARG_INT64(0);

		la_wait_register(jobid);
		PG_TRY();
		{
			status = la_wait_loop(jobid, deadline, cxt);
		}
		PG_FINALLY();
		{
			la_wait_unregister();
		}
		PG_END_TRY();
	}
	SPI_finish();
	MemoryContextSwitchTo(cxt);
	isnull = status == NULL;
	value = isnull ? (Datum) 0 : CStringGetTextDatum(status);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, &value, &isnull)));
}
