/*
 * slot_wake.c - waking the processes in worker slots: an idle worker
 * whose role has work again, a worker asked to retire, every process of a
 * database that is being dropped
 *
 * The slots are read under la_shmem->mutex; the latches are set after it
 * is released (SetLatch may signal another process).
 */
#include "postgres.h"

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"

#include "state/la_state.h"
#include "state/la_state_internal.h"

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

/* A slot whose process is (or soon will be) connected and runs no task. */
static bool
la_slot_idle_in(LaSlot *slot, Oid dboid)
{
	return slot->dboid == dboid &&
		(slot->state == LA_SLOT_LAUNCHING || slot->state == LA_SLOT_ACTIVE) &&
		pg_atomic_read_u64(&slot->jobid) == 0;
}

/*
 * Wake the idle workers of a role in a database: a submit committed tasks
 * for them.  Called at commit, from any backend; never errors, so it
 * allocates nothing (and wakes at most 64: each claims in turn anyway).
 * Returns how many it woke.
 */
int
la_slot_wake_idle(Oid dboid, Oid roleid)
{
	int			procnos[64];
	int			n = 0;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots && n < lengthof(procnos); i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];

		if (slot->kind == LA_KIND_WORKER && slot->roleid == roleid && !slot->retire &&
			slot->state == LA_SLOT_ACTIVE && la_slot_idle_in(slot, dboid) && slot->procno >= 0)
			procnos[n++] = slot->procno;
	}
	SpinLockRelease(&la_shmem->mutex);
	/* SetLatch outside the spinlock: it may signal another process. */
	for (int i = 0; i < n; i++)
		SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
	return n;
}

/*
 * Ask every process of ours in a database to leave: idle workers and scouts
 * exit at once, a worker running a task after it (see la_slot_set_job).
 */
void
la_slot_evict_database(Oid dboid)
{
	int		   *procnos = palloc(sizeof(int) * la_shmem->nslots);
	int			n = 0;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots; i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];

		if (slot->dboid != dboid || slot->state == LA_SLOT_FREE)
			continue;
		slot->retire = true;
		if (slot->procno >= 0)
			procnos[n++] = slot->procno;
	}
	SpinLockRelease(&la_shmem->mutex);
	for (int i = 0; i < n; i++)
		SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
	pfree(procnos);
}

/* Processes of ours in a database that run no task (they are leaving). */
int
la_slot_count_idle_in_database(Oid dboid)
{
	int			n = 0;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots; i++)
		if (la_slot_idle_in(&la_shmem->slots[i], dboid))
			n++;
	SpinLockRelease(&la_shmem->mutex);
	return n;
}
