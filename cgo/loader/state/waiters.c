/*
 * waiters.c - the waiters of lantern.wait_task(), and the wake-up at the
 * commit that gives their tasks a final status
 *
 * Each backend has one waiter entry in shared memory, indexed by its PGPROC
 * number: whether it waits, and the database and jobid it waits for.  Every
 * statement that gives tasks a final status goes through la_queue_settle
 * (tables/queue.c), which notes the jobids here; at the commit of that
 * transaction, once the new status is visible, the waiters of those jobids
 * get their latch set.  A waiter registers before it reads the status
 * (functions/wait.c), so a finish that commits in between still sets its
 * latch: no wake-up is lost.  The count of entries in use is exact (an
 * entry is given up on ERROR and on FATAL alike), so a commit with nobody
 * waiting skips the scan.
 *
 * The same commit tells history.c when those tasks finished.
 *
 * The table is a segment of its own (created with the main one, shmem.c);
 * no lock guards it: each entry is written only by its own backend, and
 * atomics and memory barriers order what a commit's scan reads.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "base/la_compat.h"
#include "state/la_state.h"

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
 * sees (hooks/dbguard.c): its effects are visible already, so every waiter of the
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

/* Idempotent: wait_task's PG_FINALLY and the exit callback may both get here. */
void
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

/* This backend waits for jobid: before wait_task's first look at its status. */
void
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
