/*
 * wait.c - lantern.wait_task(): sleep on the latch until a task finishes
 *
 * Each backend has one waiter entry in shared memory, indexed by its PGPROC
 * number: whether it waits, and the database and jobid it waits for.  Every
 * statement that gives tasks a final status goes through la_queue_settle,
 * which notes the jobids here; at the commit of that transaction, once the
 * new status is visible, the waiters of those jobids get their latch set.
 * A waiter registers before it reads the status, so a finish that commits
 * in between still sets its latch: no wake-up is lost.  The count of
 * entries in use is exact (an entry is given up on ERROR and on FATAL
 * alike), so a commit with nobody waiting skips the scan.
 *
 * The same commit tells history.c when those tasks finished.
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

#include "la_compat.h"
#include "la_loader.h"
#include "la_shared.h"

PG_FUNCTION_INFO_V1(lantern_async_wait_task);

/*
 * Only a commit no code of ours sees (a superuser's own UPDATE of the
 * table) goes without a wake-up; the waiter looks again this often at most
 * in that case.
 */
#define LA_WAIT_RECHECK_MS 10000

typedef struct LaWaiter
{
	pg_atomic_uint32 waiting;	/* 1: dboid and jobid name what it waits for */
	Oid			dboid;
	pg_atomic_uint64 jobid;		/* any jobid, 0 included */
} LaWaiter;

typedef struct LaWaiters
{
	pg_atomic_uint32 count;		/* entries waiting: commits skip the scan at 0 */
	LaWaiter	entries[FLEXIBLE_ARRAY_MEMBER];
} LaWaiters;

static LaWaiters *la_waiters = NULL;

Size
la_wait_shmem_size(void)
{
	return add_size(offsetof(LaWaiters, entries), mul_size(sizeof(LaWaiter), MaxBackends));
}

void
la_wait_shmem_init(void)
{
	bool		found;

	la_waiters = ShmemInitStruct("lantern_async waiters", la_wait_shmem_size(), &found);
	if (!found)
	{
		pg_atomic_init_u32(&la_waiters->count, 0);
		for (int i = 0; i < MaxBackends; i++)
		{
			pg_atomic_init_u32(&la_waiters->entries[i].waiting, 0);
			la_waiters->entries[i].dboid = InvalidOid;
			pg_atomic_init_u64(&la_waiters->entries[i].jobid, 0);
		}
	}
}

/* Jobids this transaction gave a final status, for its commit to wake. */
#define LA_NOTED_MAX 8

static int64 la_noted[LA_NOTED_MAX];
static int	la_nnoted = 0;
static bool la_noted_all = false;	/* too many, or a settle of many: wake the database */
static bool la_callback_registered = false;
static bool la_exit_callback_registered = false;

/* Set the latches of this database's waiters for the noted jobids, or of all (every). */
static void
la_wait_wake(bool every)
{
	if (pg_atomic_read_u32(&la_waiters->count) == 0)
		return;
	for (int i = 0; i < MaxBackends; i++)
	{
		LaWaiter   *w = &la_waiters->entries[i];
		int64		jobid;
		bool		wanted = every;

		if (pg_atomic_read_u32(&w->waiting) == 0)
			continue;
		/* Published after dboid and jobid (la_wait_register). */
		pg_read_barrier();
		if (w->dboid != MyDatabaseId)
			continue;
		jobid = (int64) pg_atomic_read_u64(&w->jobid);
		for (int k = 0; k < la_nnoted && !wanted; k++)
			wanted = la_noted[k] == jobid;
		if (wanted)
			SetLatch(&ProcGlobal->allProcs[i].procLatch);
	}
}

static void
la_wait_xact_callback(XactEvent event, void *arg)
{
	if (la_nnoted == 0 && !la_noted_all)
		return;
	/* At COMMIT the new statuses are visible already; PREPARE wakes nobody. */
	if (event == XACT_EVENT_COMMIT)
	{
		la_wait_wake(la_noted_all);
		/* And the history learns when these tasks finished (history.c). */
		la_history_note(MyDatabaseId, GetCurrentTimestamp());
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PREPARE)
	{
		la_nnoted = 0;
		la_noted_all = false;
	}
}

/*
 * COMMIT PREPARED has just committed a transaction of this database that
 * may have given tasks their final status, a commit no callback of ours
 * sees (dbguard.c): its effects are visible already, so every waiter of the
 * database looks again now rather than at its 10 s recheck.
 */
void
la_wait_wake_database(void)
{
	la_wait_wake(true);
}

/* A task got its final status in this transaction (jobid 0: some tasks). */
void
la_wait_note_finished(int64 jobid)
{
	if (!la_callback_registered)
	{
		RegisterXactCallback(la_wait_xact_callback, NULL);
		la_callback_registered = true;
	}
	if (jobid == 0 || la_nnoted == LA_NOTED_MAX)
		la_noted_all = true;
	else
		la_noted[la_nnoted++] = jobid;
	/*
	 * The commit scans the entries only while this is above 0.  Held: the
	 * bookkeeping's own settles must not process a die() here.
	 */
	HOLD_INTERRUPTS();
	if (jobid != 0)
		elog(DEBUG2, "lantern_async: task " INT64_FORMAT " got its final status; waiters registered: %u",
			 jobid, pg_atomic_read_u32(&la_waiters->count));
	else
		elog(DEBUG2, "lantern_async: tasks got their final status; waiters registered: %u",
			 pg_atomic_read_u32(&la_waiters->count));
	RESUME_INTERRUPTS();
}

/* Idempotent: PG_FINALLY and the exit callback may both get here. */
static void
la_wait_unregister(void)
{
	LaWaiter   *w = &la_waiters->entries[LA_MY_PROCNO];

	if (pg_atomic_exchange_u32(&w->waiting, 0) == 1)
		pg_atomic_fetch_sub_u32(&la_waiters->count, 1);
}

/* A FATAL (pg_terminate_backend, say) never reaches PG_FINALLY. */
static void
la_wait_at_exit(int code, Datum arg)
{
	la_wait_unregister();
}

static void
la_wait_register(int64 jobid)
{
	LaWaiter   *w;

	/* Regular backends and background workers come first in allProcs. */
	if (LA_MY_PROCNO >= MaxBackends)
		elog(ERROR, "lantern.wait_task() cannot run in this process");
	if (!la_exit_callback_registered)
	{
		before_shmem_exit(la_wait_at_exit, (Datum) 0);
		la_exit_callback_registered = true;
	}
	w = &la_waiters->entries[LA_MY_PROCNO];

	w->dboid = MyDatabaseId;
	pg_atomic_write_u64(&w->jobid, (uint64) jobid);
	/* A commit's scan reads dboid and jobid only once it sees waiting. */
	pg_write_barrier();
	if (pg_atomic_exchange_u32(&w->waiting, 1) == 0)
		pg_atomic_fetch_add_u32(&la_waiters->count, 1);
	/* Ordered before the first look at the status (a full barrier). */
	pg_memory_barrier();
}

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
