/*
 * slots.c - the life of a worker slot: reserved and released by the
 * dispatcher, attached and detached by its worker, the task it runs, and
 * the wake-ups and retirement of an idle worker
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
#include "la_slots.h"

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
	view->retiring = slot->retire;
	view->tasks_run = slot->tasks_run;
}

void
la_slot_view(int index, LaSlotView *view)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_slot_copy(index, view);
	SpinLockRelease(&la_shmem->mutex);
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
		la_slot_free(slot);		/* from a clean slate, also at first use */
		slot->state = LA_SLOT_LAUNCHING;
		slot->dboid = dboid;
		slot->roleid = roleid;
		found = i;
		break;
	}
	SpinLockRelease(&la_shmem->mutex);
	return found;
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
