/*
 * slots.c - the life of a worker slot: reserved and released by the
 * launcher, attached and detached by its worker or scout, the task it runs,
 * and the wake-ups and retirement of an idle worker
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

#include "la_compat.h"
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
 * the command's guard (dbguard.c) waits for its process to leave, or the
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
 * (a FATAL parked by fatal.c while a cancel_task() went in): then the task
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

/*
 * Fill this worker's own parked outcome; only the slot's worker writes it,
 * and only the launcher reads it, once that worker has exited (la_slot_reap),
 * so the copy needs no lock: the spinlock that then sets parked.set orders
 * it before any reader.  The message is truncated.
 */
static void
la_outcome_fill(LaOutcome *o, const char *status, const char *sqlstate, const char *message)
{
	strlcpy(o->status, status, sizeof(o->status));
	strlcpy(o->sqlstate, sqlstate ? sqlstate : "", sizeof(o->sqlstate));
	strlcpy(o->message, message ? message : "", sizeof(o->message));
}

/*
 * Leave the running task's outcome with the slot: the worker could not
 * record it (the queue's table could not be locked in time) and exits to
 * free the slot.
 */
void
la_slot_park(int index, const char *status, const char *sqlstate, const char *message)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	if (slot->parked.set)
		return;
	la_outcome_fill(&slot->parked, status, sqlstate, message);
	SpinLockAcquire(&la_shmem->mutex);
	slot->parked.set = true;
	SpinLockRelease(&la_shmem->mutex);
}

/*
 * The worker is ending on a FATAL error during its task (fatal.c): that
 * error is the outcome, unless none is needed (no task named), one is
 * parked already, or cancel_task() had stopped the task (it ends canceled).
 * Called while the error is reported: nothing here may raise one.
 */
void
la_slot_park_fatal(int index, const char *sqlstate, const char *message)
{
	LaSlot	   *slot = &la_shmem->slots[index];
	uint64		jobid;

	/* Only this process sets parked.set: reading it unlocked is safe here. */
	if (slot->parked.set || pg_atomic_read_u64(&slot->jobid) == 0)
		return;
	la_outcome_fill(&slot->parked, "failed", sqlstate, message);
	SpinLockAcquire(&la_shmem->mutex);
	jobid = pg_atomic_read_u64(&slot->jobid);
	if (jobid != 0 && pg_atomic_read_u64(&slot->cancel_jobid) != jobid)
		slot->parked.set = true;
	SpinLockRelease(&la_shmem->mutex);
}

/* Whether the slot names a task now (lock-free: fatal.c asks at every error). */
bool
la_slot_names_job(int index)
{
	return pg_atomic_read_u64(&la_shmem->slots[index].jobid) != 0;
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
 * it brings the slot's generation (bgw_extra, la_launch.c).  One that
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

/*
 * A claim names its task here before it commits (see la_bk_claim).  False,
 * and nothing named, when the slot was asked to retire meanwhile: the claim
 * must then roll back, so that a DROP DATABASE that evicted this worker does
 * not find a task started after all.  finished_one: the task the slot named
 * until now gets its outcome in the same commit (it counts as run).  prior
 * receives what was replaced, for la_slot_unset_job.
 */
bool
la_slot_set_job(int index, int64 jobid, Oid tasks_relid, bool finished_one, LaSlotJob *prior)
{
	LaSlot	   *slot = &la_shmem->slots[index];
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&la_shmem->mutex);
	if (slot->retire)
	{
		SpinLockRelease(&la_shmem->mutex);
		return false;
	}
	prior->jobid = pg_atomic_read_u64(&slot->jobid);
	prior->cancel_jobid = pg_atomic_read_u64(&slot->cancel_jobid);
	prior->tasks_relid = slot->tasks_relid;
	prior->finishing = slot->finishing;
	prior->tasks_run = slot->tasks_run;
	prior->started = slot->started;
	slot->tasks_relid = tasks_relid;
	slot->finishing = false;
	if (finished_one)
		slot->tasks_run++;
	slot->started = now;
	pg_atomic_write_u64(&slot->cancel_jobid, 0);
	pg_atomic_write_u64(&slot->jobid, (uint64) jobid);
	SpinLockRelease(&la_shmem->mutex);
	return true;
}

/*
 * The claim of jobid failed before it committed: the slot names again what
 * it named before (the previous task, whose outcome was rolled back with
 * the claim, or none).  The caller must do this before the abort releases
 * the claimed row (la_bk_claim says why).  A cancel of jobid accepted
 * meanwhile (only cancel_all_async_tasks() looks at uncommitted claims)
 * is dropped here: the task is pending again, and that call cancels it as
 * such once the row is free.
 */
void
la_slot_unset_job(int index, int64 jobid, const LaSlotJob *prior)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	SpinLockAcquire(&la_shmem->mutex);
	if (pg_atomic_read_u64(&slot->jobid) == (uint64) jobid)
	{
		slot->tasks_relid = prior->tasks_relid;
		slot->finishing = prior->finishing;
		slot->tasks_run = prior->tasks_run;
		slot->started = prior->started;
		pg_atomic_write_u64(&slot->jobid, prior->jobid);
		pg_atomic_write_u64(&slot->cancel_jobid, prior->cancel_jobid);
	}
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

/*
 * The jobids that live slots of a database run (or claim) now: a scout must
 * not fail those.  Returns how many were copied, at most max.
 */
int
la_slot_live_jobs(Oid dboid, int64 *jobids, int max)
{
	int			n = 0;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots && n < max; i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];
		uint64		jobid = pg_atomic_read_u64(&slot->jobid);

		if (slot->dboid == dboid && slot->state != LA_SLOT_FREE && jobid != 0)
			jobids[n++] = (int64) jobid;
	}
	SpinLockRelease(&la_shmem->mutex);
	return n;
}

/*
 * The tasks the live workers of a database run from the lantern.tasks
 * tasks_relid (its jobids mean nothing to a re-created table).  Returns how
 * many were copied, at most max.
 */
int
la_slot_running(Oid dboid, Oid tasks_relid, LaRunning *out, int max)
{
	int			n = 0;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < la_shmem->nslots && n < max; i++)
	{
		LaSlot	   *slot = &la_shmem->slots[i];
		uint64		jobid = pg_atomic_read_u64(&slot->jobid);

		if (slot->kind != LA_KIND_WORKER || slot->state != LA_SLOT_ACTIVE ||
			slot->dboid != dboid || slot->tasks_relid != tasks_relid || jobid == 0)
			continue;
		out[n].jobid = (int64) jobid;
		out[n].pid = slot->pid;
		out[n].roleid = slot->roleid;
		out[n].started = slot->started;
		n++;
	}
	SpinLockRelease(&la_shmem->mutex);
	return n;
}
