/*
 * shmem.c - the worker slots and the dispatcher's latch, in shared memory
 *
 * One slot per task that may run at once (lantern_async.max_workers).  The
 * dispatcher reserves a slot before it launches a worker and frees it after
 * the worker is gone, so a slot's jobid tells, even after its process died,
 * which task it was running.  Everything here is a short critical section
 * under one spinlock: no PostgreSQL call that could ERROR runs while it is
 * held.
 */
#include "postgres.h"

#include "miscadmin.h"
#include <signal.h>

#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "la_loader.h"
#include "la_shared.h"

typedef struct LaSlot
{
	LaSlotState state;
	Oid			dboid;
	Oid			roleid;
	int			pid;
	Oid			tasks_relid;
	bool		clean_exit;
	/* Atomics: the worker's SIGINT handler reads them without the lock. */
	pg_atomic_uint64 jobid;		/* task being run, 0 when none */
	pg_atomic_uint64 cancel_jobid;	/* task lantern.cancel_task() stopped, 0 when none */
} LaSlot;

typedef struct LaShmem
{
	slock_t		mutex;
	int			dispatcher_procno;	/* -1 while no dispatcher runs */
	bool		reconciled;		/* crash reconciliation done since start */
	int			nslots;
	LaSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} LaShmem;

static LaShmem *la_shmem = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
la_shmem_size(void)
{
	return add_size(offsetof(LaShmem, slots),
					mul_size(sizeof(LaSlot), la_max_workers));
}

static void
la_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(la_shmem_size());
}

static void
la_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	la_shmem = ShmemInitStruct("lantern_async", la_shmem_size(), &found);
	if (!found)
	{
		memset(la_shmem, 0, la_shmem_size());
		SpinLockInit(&la_shmem->mutex);
		la_shmem->dispatcher_procno = -1;
		la_shmem->nslots = la_max_workers;
		for (int i = 0; i < la_shmem->nslots; i++)
		{
			pg_atomic_init_u64(&la_shmem->slots[i].jobid, 0);
			pg_atomic_init_u64(&la_shmem->slots[i].cancel_jobid, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
la_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = la_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = la_shmem_startup;
}

int
la_slot_count(void)
{
	return la_shmem->nslots;
}

void
la_slot_view(int index, LaSlotView *view)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	SpinLockAcquire(&la_shmem->mutex);
	view->index = index;
	view->state = slot->state;
	view->roleid = slot->roleid;
	view->pid = slot->pid;
	view->jobid = (int64) pg_atomic_read_u64(&slot->jobid);
	view->tasks_relid = slot->tasks_relid;
	view->clean_exit = slot->clean_exit;
	SpinLockRelease(&la_shmem->mutex);
}

/* Returns the index of a newly reserved slot, or -1 when all are in use. */
int
la_slot_reserve(Oid dboid, Oid roleid)
{
	int			found = -1;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots; i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];

		if (slot->state != LA_SLOT_FREE)
			continue;
		slot->state = LA_SLOT_LAUNCHING;
		slot->dboid = dboid;
		slot->roleid = roleid;
		slot->pid = 0;
		slot->clean_exit = false;
		pg_atomic_write_u64(&slot->jobid, 0);
		pg_atomic_write_u64(&slot->cancel_jobid, 0);
		found = i;
		break;
	}
	SpinLockRelease(&la_shmem->mutex);
	return found;
}

void
la_slot_release(int index)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	SpinLockAcquire(&la_shmem->mutex);
	slot->state = LA_SLOT_FREE;
	slot->dboid = InvalidOid;
	slot->roleid = InvalidOid;
	slot->pid = 0;
	slot->tasks_relid = InvalidOid;
	slot->clean_exit = false;
	pg_atomic_write_u64(&slot->jobid, 0);
	pg_atomic_write_u64(&slot->cancel_jobid, 0);
	SpinLockRelease(&la_shmem->mutex);
}

static void
la_slot_detach(int code, Datum arg)
{
	LaSlot	   *slot = &la_shmem->slots[DatumGetInt32(arg)];

	SpinLockAcquire(&la_shmem->mutex);
	slot->state = LA_SLOT_EXITED;
	slot->pid = 0;
	SpinLockRelease(&la_shmem->mutex);
}

/*
 * Called first thing in a worker: from here on, however the process ends
 * short of a crash, the slot is marked exited and keeps its jobid for the
 * dispatcher to see.  (A crash reinitializes shared memory.)
 */
void
la_slot_attach(int index)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	on_shmem_exit(la_slot_detach, Int32GetDatum(index));
	SpinLockAcquire(&la_shmem->mutex);
	slot->state = LA_SLOT_ACTIVE;
	slot->pid = MyProcPid;
	SpinLockRelease(&la_shmem->mutex);
}

void
la_slot_set_job(int index, int64 jobid, Oid tasks_relid)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	SpinLockAcquire(&la_shmem->mutex);
	slot->tasks_relid = tasks_relid;
	pg_atomic_write_u64(&slot->cancel_jobid, 0);
	pg_atomic_write_u64(&slot->jobid, (uint64) jobid);
	SpinLockRelease(&la_shmem->mutex);
}

/*
 * Ask the worker running a task to cancel it.  The signal is sent with the
 * lock held, so the worker cannot move on to its next task (which needs the
 * lock to publish its jobid) before the signal is pending; its handler
 * then drops a cancel whose task is no longer the one running.
 */
bool
la_slot_request_cancel(int64 jobid, Oid tasks_relid)
{
	bool		sent = false;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots; i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];

		/* After DROP/CREATE EXTENSION an old table's task may hold the same jobid. */
		if (slot->state != LA_SLOT_ACTIVE || slot->tasks_relid != tasks_relid ||
			pg_atomic_read_u64(&slot->jobid) != (uint64) jobid)
			continue;
		pg_atomic_write_u64(&slot->cancel_jobid, (uint64) jobid);
		sent = kill(slot->pid, SIGINT) == 0;
		break;
	}
	SpinLockRelease(&la_shmem->mutex);
	return sent;
}

bool
la_slot_cancel_requested(int index, int64 jobid)
{
	return pg_atomic_read_u64(&la_shmem->slots[index].cancel_jobid) == (uint64) jobid;
}

/* Async-signal-safe: a cancel_task() aimed at a task this worker no longer runs. */
bool
la_slot_cancel_is_stale(int index)
{
	LaSlot	   *slot = &la_shmem->slots[index];
	uint64		cancel = pg_atomic_read_u64(&slot->cancel_jobid);

	return cancel != 0 && cancel != pg_atomic_read_u64(&slot->jobid);
}

void
la_slot_mark_clean(int index)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->slots[index].clean_exit = true;
	SpinLockRelease(&la_shmem->mutex);
}

void
la_slot_target(int index, Oid *dboid, Oid *roleid)
{
	SpinLockAcquire(&la_shmem->mutex);
	*dboid = la_shmem->slots[index].dboid;
	*roleid = la_shmem->slots[index].roleid;
	SpinLockRelease(&la_shmem->mutex);
}

static void
la_dispatcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->dispatcher_procno = -1;
	SpinLockRelease(&la_shmem->mutex);
}

void
la_dispatcher_attach(void)
{
	on_shmem_exit(la_dispatcher_detach, (Datum) 0);
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->dispatcher_procno = MyProc->pgprocno;
	SpinLockRelease(&la_shmem->mutex);
}

/* Safe to call from any backend, in any state: it never errors. */
void
la_dispatcher_wake(void)
{
	int			procno;

	if (la_shmem == NULL)
		return;
	SpinLockAcquire(&la_shmem->mutex);
	procno = la_shmem->dispatcher_procno;
	SpinLockRelease(&la_shmem->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * Shared memory is created anew at every server start and after every crash,
 * before any worker can run, so rows still 'running' when it is fresh have no
 * live process.  The dispatcher reconciles them once, before its first launch.
 */
bool
la_reconcile_needed(void)
{
	bool		needed;

	SpinLockAcquire(&la_shmem->mutex);
	needed = !la_shmem->reconciled;
	SpinLockRelease(&la_shmem->mutex);
	return needed;
}

void
la_reconcile_done(void)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->reconciled = true;
	SpinLockRelease(&la_shmem->mutex);
}
