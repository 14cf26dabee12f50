/*
 * slots.c - the life of a worker slot: reserved and released by the
 * launcher, attached and detached by its worker or scout, and reaped once
 * its process is gone (README.md here draws the states)
 *
 * The task a slot runs is in slot_job.c, the wake-ups and retirement of
 * the processes in slots in slot_wake.c, cancels in slot_cancel.c; all
 * four are the slots' owners, under la_shmem->mutex.
 */
#include "postgres.h"

#include "miscadmin.h"
#include <signal.h>

#include "postmaster/bgworker.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "base/la_compat.h"
#include "state/la_state.h"
#include "state/la_state_internal.h"

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
	view->kind = slot->kind;
	view->dboid = slot->dboid;
	view->roleid = slot->roleid;
	view->pid = slot->pid;
	view->jobid = (int64) pg_atomic_read_u64(&slot->jobid);
	view->tasks_relid = slot->tasks_relid;
	view->cancel_requested = view->jobid != 0 &&
		pg_atomic_read_u64(&slot->cancel_jobid) == (uint64) view->jobid;
	view->clean_exit = slot->clean_exit;
	view->retiring = slot->retire;
	view->parked = slot->parked.set;
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
	slot->kind = LA_KIND_WORKER;
	slot->start_sweep = false;
	slot->dboid = InvalidOid;
	slot->roleid = InvalidOid;
	slot->pid = 0;
	slot->tasks_relid = InvalidOid;
	slot->clean_exit = false;
	slot->finishing = false;
	slot->retire = false;
	slot->procno = -1;
	slot->tasks_run = 0;
	slot->parked.set = false;
	pg_atomic_write_u64(&slot->jobid, 0);
	pg_atomic_write_u64(&slot->cancel_jobid, 0);
}

/*
 * Returns the index of a newly reserved slot, or -1 when all are in use or
 * a DROP/ALTER/CREATE DATABASE blocks the database.  The block is checked
 * under the same lock as the slots: either the slot is reserved first, and
 * the command's guard (hooks/dbguard.c) waits for its process to leave, or the
 * block came first and nothing is launched.
 */
int
la_slot_reserve(LaSlotKind kind, Oid dboid, Oid roleid, bool start_sweep)
{
	TimestampTz now = GetCurrentTimestamp();
	int			found = -1;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots && found < 0 && !la_block_holds(dboid, now); i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];

		if (slot->state != LA_SLOT_FREE)
			continue;
		la_slot_free(slot);		/* from a clean slate, also at first use */
		slot->generation++;
		slot->state = LA_SLOT_LAUNCHING;
		slot->kind = kind;
		slot->start_sweep = start_sweep;
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

/* The generation the process launched into a slot just reserved must bring. */
uint32
la_slot_generation(int index)
{
	uint32		generation;

	SpinLockAcquire(&la_shmem->mutex);
	generation = la_shmem->slots[index].generation;
	SpinLockRelease(&la_shmem->mutex);
	return generation;
}

/*
 * Free a slot still LAUNCHING that a launcher before this one reserved: its
 * handle went with that launcher, so nobody would ever learn that its
 * process did not start (the postmaster could not fork it), and the slot
 * would be lost until the server restarts.  Safe even if the process does
 * start later: it brings the slot's old generation, and la_slot_attach
 * sends it away without touching the slot.  True, with a copy of the slot,
 * when it was freed; false when its process attached meanwhile (it is
 * ACTIVE: reaped as any other).
 */
bool
la_slot_reclaim(int index, LaSlotView *view)
{
	LaSlot	   *slot = &la_shmem->slots[index];
	bool		reclaimed = false;

	SpinLockAcquire(&la_shmem->mutex);
	if (slot->state == LA_SLOT_LAUNCHING)
	{
		la_slot_copy(index, view);
		la_slot_free(slot);
		reclaimed = true;
	}
	SpinLockRelease(&la_shmem->mutex);
	return reclaimed;
}

/*
 * Copy and free a slot in one critical section, so that a cancel accepted
 * for its task is either in the copy or refused (the slot is free).  An
 * outcome its worker parked moves to the lost list first (under the list's
 * own lock: it is too large to copy under the spinlock), while the slot
 * still names the task, so that a scout's orphan sweep, which reads the
 * slots and then the list, finds the task in one or the other.  From the
 * moment the move is decided no cancel is accepted (finishing): the parked
 * outcome stands, unless a cancel had been accepted before it was decided
 * (a FATAL parked by hooks/fatal.c while a cancel_task() went in): then the task
 * ends canceled, as that call promised.  The slot's process is gone, so
 * nothing writes its parked outcome meanwhile.
 */
void
la_slot_reap(int index, LaSlotView *view)
{
	LaSlot	   *slot = &la_shmem->slots[index];
	uint64		jobid;
	bool		move;
	bool		canceled = false;
	bool		decided = false;

	SpinLockAcquire(&la_shmem->mutex);
	jobid = pg_atomic_read_u64(&slot->jobid);
	move = slot->parked.set && jobid != 0;
	if (move)
	{
		canceled = pg_atomic_read_u64(&slot->cancel_jobid) == jobid;
		decided = slot->finishing;
		slot->finishing = true;
	}
	SpinLockRelease(&la_shmem->mutex);

	if (move)
		la_lost_put(slot->dboid, slot->tasks_relid, (int64) jobid, canceled,
					decided || !canceled ? &slot->parked : NULL);

	SpinLockAcquire(&la_shmem->mutex);
	la_slot_copy(index, view);
	la_slot_free(slot);
	SpinLockRelease(&la_shmem->mutex);
}

/* This process holds its slot (la_slot_attach accepted it). */
static bool la_slot_attached = false;

static void
la_slot_detach(int code, Datum arg)
{
	LaSlot	   *slot = &la_shmem->slots[DatumGetInt32(arg)];

	if (!la_slot_attached)
		return;
	SpinLockAcquire(&la_shmem->mutex);
	slot->state = LA_SLOT_EXITED;
	slot->pid = 0;
	slot->procno = -1;
	SpinLockRelease(&la_shmem->mutex);
}

/*
 * Called first thing in a worker: from here on, however the process ends
 * short of a crash, the slot is marked exited and keeps its jobid for the
 * launcher to see.  (A crash reinitializes shared memory.)
 *
 * Only the process launched into the slot's current reservation attaches:
 * it brings the slot's generation (bgw_extra, helpers/la_launch.c).  One that
 * starts after a new launcher reclaimed its slot (la_slot_reclaim) finds
 * the slot free or reserved anew, under another generation, and exits
 * without touching it: check and attach are one critical section, as is
 * the reclaim, so exactly one of them wins.
 */
void
la_slot_attach(int index)
{
	LaSlot	   *slot = &la_shmem->slots[index];
	uint32		generation;

	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	/* The callback first: no instant with the slot ACTIVE and nobody to mark its exit. */
	on_shmem_exit(la_slot_detach, Int32GetDatum(index));
	SpinLockAcquire(&la_shmem->mutex);
	if (slot->state == LA_SLOT_LAUNCHING && slot->generation == generation)
	{
		slot->state = LA_SLOT_ACTIVE;
		slot->pid = MyProcPid;
		slot->procno = LA_MY_PROCNO;
		la_slot_attached = true;
	}
	SpinLockRelease(&la_shmem->mutex);
	if (!la_slot_attached)
	{
		elog(LOG, "lantern_async: slot %d was reclaimed before this process started; exiting", index);
		proc_exit(0);
	}
}

void
la_slot_mark_clean(int index)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->slots[index].clean_exit = true;
	SpinLockRelease(&la_shmem->mutex);
}

void
la_slot_target(int index, LaSlotKind *kind, Oid *dboid, Oid *roleid)
{
	SpinLockAcquire(&la_shmem->mutex);
	*kind = la_shmem->slots[index].kind;
	*dboid = la_shmem->slots[index].dboid;
	*roleid = la_shmem->slots[index].roleid;
	SpinLockRelease(&la_shmem->mutex);
}

bool
la_slot_start_sweep(int index)
{
	bool		start;

	SpinLockAcquire(&la_shmem->mutex);
	start = la_shmem->slots[index].start_sweep;
	SpinLockRelease(&la_shmem->mutex);
	return start;
}
