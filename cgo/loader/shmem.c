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
	bool		finishing;		/* the task's outcome is being committed: too late to cancel */
	bool		retire;			/* the dispatcher needs the slot: exit instead of waiting */
	int			procno;			/* the worker's PGPROC, for its latch; -1 when none */
	int64		tasks_run;
	/* Atomics: the worker's cancel handler reads them without the lock. */
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

/* Copy a slot; the caller holds the lock. */
static void
la_slot_copy(int index, LaSlotView *view)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	view->index = index;
	view->state = slot->state;
	view->roleid = slot->roleid;
	view->pid = slot->pid;
	view->jobid = (int64) pg_atomic_read_u64(&slot->jobid);
	view->tasks_relid = slot->tasks_relid;
	view->cancel_requested = view->jobid != 0 &&
		pg_atomic_read_u64(&slot->cancel_jobid) == (uint64) view->jobid;
	view->clean_exit = slot->clean_exit;
	view->tasks_run = slot->tasks_run;
}

void
la_slot_view(int index, LaSlotView *view)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_slot_copy(index, view);
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
		slot->finishing = false;
		slot->retire = false;
		slot->procno = -1;
		slot->tasks_run = 0;
		pg_atomic_write_u64(&slot->jobid, 0);
		pg_atomic_write_u64(&slot->cancel_jobid, 0);
		found = i;
		break;
	}
	SpinLockRelease(&la_shmem->mutex);
	return found;
}

static void
la_slot_free(LaSlot *slot)
{
	slot->state = LA_SLOT_FREE;
	slot->dboid = InvalidOid;
	slot->roleid = InvalidOid;
	slot->pid = 0;
	slot->tasks_relid = InvalidOid;
	slot->clean_exit = false;
	slot->finishing = false;
	slot->retire = false;
	slot->procno = -1;
	slot->tasks_run = 0;
	pg_atomic_write_u64(&slot->jobid, 0);
	pg_atomic_write_u64(&slot->cancel_jobid, 0);
}

void
la_slot_release(int index)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_slot_free(&la_shmem->slots[index]);
	SpinLockRelease(&la_shmem->mutex);
}

/*
 * Copy and free a slot in one critical section, so that a cancel accepted
 * for its task is either in the copy or refused (the slot is free).
 */
void
la_slot_reap(int index, LaSlotView *view)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_slot_copy(index, view);
	la_slot_free(&la_shmem->slots[index]);
	SpinLockRelease(&la_shmem->mutex);
}

static void
la_slot_detach(int code, Datum arg)
{
	LaSlot	   *slot = &la_shmem->slots[DatumGetInt32(arg)];

	SpinLockAcquire(&la_shmem->mutex);
	slot->state = LA_SLOT_EXITED;
	slot->pid = 0;
	slot->procno = -1;
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
	slot->procno = MyProc->pgprocno;
	SpinLockRelease(&la_shmem->mutex);
}

/* A claim names its task here before it commits (see la_bk_claim). */
void
la_slot_set_job(int index, int64 jobid, Oid tasks_relid)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	SpinLockAcquire(&la_shmem->mutex);
	slot->tasks_relid = tasks_relid;
	slot->finishing = false;
	pg_atomic_write_u64(&slot->cancel_jobid, 0);
	pg_atomic_write_u64(&slot->jobid, (uint64) jobid);
	SpinLockRelease(&la_shmem->mutex);
}

/* The task's outcome is committed: the slot no longer names it. */
void
la_slot_task_done(int index)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	SpinLockAcquire(&la_shmem->mutex);
	slot->finishing = false;
	slot->tasks_run++;
	pg_atomic_write_u64(&slot->jobid, 0);
	pg_atomic_write_u64(&slot->cancel_jobid, 0);
	SpinLockRelease(&la_shmem->mutex);
}

/*
 * The point of no return of a task: called just before the transaction
 * that records its outcome commits.  False when a cancel was accepted
 * first (the task must then end canceled); otherwise, from here on,
 * cancel_task() refuses and returns false, because the task finishes.
 */
bool
la_slot_begin_finishing(int index, int64 jobid)
{
	LaSlot	   *slot = &la_shmem->slots[index];
	bool		ok;

	SpinLockAcquire(&la_shmem->mutex);
	ok = pg_atomic_read_u64(&slot->cancel_jobid) != (uint64) jobid;
	if (ok)
		slot->finishing = true;
	SpinLockRelease(&la_shmem->mutex);
	return ok;
}

/* Under the lock: accept a cancel of the task a slot runs, unless it is finishing. */
static bool
la_slot_accept_cancel(LaSlot *slot, int64 jobid, int *pid)
{
	if (slot->finishing)
		return false;
	/* Accepted already: the worker has had its signal. */
	if (pg_atomic_read_u64(&slot->cancel_jobid) == (uint64) jobid)
		return true;
	pg_atomic_write_u64(&slot->cancel_jobid, (uint64) jobid);
	*pid = slot->state == LA_SLOT_ACTIVE ? slot->pid : 0;
	return true;
}

/*
 * A slot whose worker runs (or ran, if it died and was not reaped yet) a
 * task of this lantern.tasks.  After DROP/CREATE EXTENSION an old table's
 * task may hold the same jobid, hence the relid.
 */
static bool
la_slot_runs(LaSlot *slot, Oid tasks_relid)
{
	return (slot->state == LA_SLOT_ACTIVE || slot->state == LA_SLOT_EXITED) &&
		slot->tasks_relid == tasks_relid && pg_atomic_read_u64(&slot->jobid) != 0;
}

/*
 * The cancel signal goes out after the lock is released (never kill()
 * under a spinlock).  It is SIGUSR2, not SIGINT, so that an administrator's
 * pg_cancel_backend() and ours are never confused; a signal that arrives
 * late finds the slot naming another task, or none, and is dropped by the
 * worker's handler (loader.c).
 */
static void
la_slot_signal(int pid)
{
	if (pid > 0)
		(void) kill(pid, SIGUSR2);
}

/* Returns true when the running task will end canceled. */
bool
la_slot_cancel_job(int64 jobid, Oid tasks_relid)
{
	bool		accepted = false;
	int			pid = 0;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots; i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];

		if (la_slot_runs(slot, tasks_relid) && pg_atomic_read_u64(&slot->jobid) == (uint64) jobid)
		{
			accepted = la_slot_accept_cancel(slot, jobid, &pid);
			break;
		}
	}
	SpinLockRelease(&la_shmem->mutex);
	la_slot_signal(pid);
	return accepted;
}

/* Cancel every running task of a role (InvalidOid: of every role). */
void
la_slot_cancel_role(Oid roleid, Oid tasks_relid)
{
	int		   *pids = palloc0(sizeof(int) * la_shmem->nslots);

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots; i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];

		if (la_slot_runs(slot, tasks_relid) && (!OidIsValid(roleid) || slot->roleid == roleid))
			(void) la_slot_accept_cancel(slot, (int64) pg_atomic_read_u64(&slot->jobid), &pids[i]);
	}
	SpinLockRelease(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots; i++)
		la_slot_signal(pids[i]);
	pfree(pids);
}

bool
la_slot_cancel_requested(int index, int64 jobid)
{
	return jobid != 0 &&
		pg_atomic_read_u64(&la_shmem->slots[index].cancel_jobid) == (uint64) jobid;
}

/* Async-signal-safe: a cancel_task() aimed at the task this worker runs now. */
bool
la_slot_cancel_is_current(int index)
{
	LaSlot	   *slot = &la_shmem->slots[index];
	uint64		cancel = pg_atomic_read_u64(&slot->cancel_jobid);

	return cancel != 0 && cancel == pg_atomic_read_u64(&slot->jobid);
}

/* Wake an idle worker: its role has work again (SetLatch never errors). */
void
la_slot_wake(int index)
{
	int			procno;

	SpinLockAcquire(&la_shmem->mutex);
	procno = la_shmem->slots[index].state == LA_SLOT_ACTIVE ? la_shmem->slots[index].procno : -1;
	SpinLockRelease(&la_shmem->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* Ask an idle worker to exit and give its slot to another role's work. */
void
la_slot_retire(int index)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->slots[index].retire = true;
	SpinLockRelease(&la_shmem->mutex);
	la_slot_wake(index);
}

bool
la_slot_retiring(int index)
{
	bool		retire;

	SpinLockAcquire(&la_shmem->mutex);
	retire = la_shmem->slots[index].retire;
	SpinLockRelease(&la_shmem->mutex);
	return retire;
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
