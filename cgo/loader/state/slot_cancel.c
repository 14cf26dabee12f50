/*
 * slot_cancel.c - cancels of running tasks, through their worker's slot
 *
 * lantern.cancel_task() accepts a cancel in the slot, under its lock, unless
 * the worker has passed the point of no return (la_slot_begin_finishing);
 * an accepted cancel always ends the task canceled.
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

#include "state/la_state.h"
#include "state/la_state_internal.h"

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
 * worker's handler (entry/loader.c).
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
