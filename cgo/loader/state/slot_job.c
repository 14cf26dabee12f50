/*
 * slot_job.c - the task a worker slot runs: named by the claim before it
 * commits, forgotten when its outcome commits, and the outcome its worker
 * parks there when it cannot record it
 *
 * From the jobid a slot names, the launcher and cancel_task() tell which
 * process owns a running task, a scout leaves the live tasks alone, and
 * lantern.running_tasks() lists them.  Under la_shmem->mutex; jobid and
 * cancel_jobid are atomics too, for the readers that take no lock.
 */
#include "postgres.h"

#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "state/la_state.h"
#include "state/la_state_internal.h"

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

/*
 * A claim decided ntasks tasks without running them (a task whose
 * dependency failed, one left waiting for its dependencies): work done,
 * which the launcher counts as it counts finished tasks (control.Exit),
 * so that a worker that only decided is not taken for one that failed.
 */
void
la_slot_tasks_decided(int index, int64 ntasks)
{
	LaSlot	   *slot = &la_shmem->slots[index];

	SpinLockAcquire(&la_shmem->mutex);
	slot->tasks_run += ntasks;
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
 * The worker is ending on a FATAL error during its task (hooks/fatal.c): that
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

/* Whether the slot names a task now (lock-free: hooks/fatal.c asks at every error). */
bool
la_slot_names_job(int index)
{
	return pg_atomic_read_u64(&la_shmem->slots[index].jobid) != 0;
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
