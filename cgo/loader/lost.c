/*
 * lost.c - tasks whose worker ended while running them
 *
 * The launcher learns of them when it reaps the slot; only a process
 * connected to the task's database can settle the row, so the task waits
 * here for a scout of that database (which also remembers whether
 * cancel_task() had accepted a cancel: the task then ends canceled).  A
 * worker that could not record its task's outcome leaves it here too
 * (la_slot_park, moved here by la_slot_reap), and the scout records it as
 * is.
 */
#include "postgres.h"

#include "storage/spin.h"

#include "la_loader.h"
#include "la_shared.h"
#include "la_slots.h"

/*
 * The caller holds the lock.  When the list is full the task is not
 * recorded: the scout's sweep still fails it (as failed, whatever its
 * outcome was).
 */
void
la_lost_put(Oid dboid, Oid tasks_relid, int64 jobid, bool canceled, const LaOutcome *outcome)
{
	for (int i = 0; i < LA_LOST; i++)
	{
		LaLost	   *l = &la_shmem->lost[i];

		if (l->jobid != 0)
			continue;
		l->dboid = dboid;
		l->tasks_relid = tasks_relid;
		l->jobid = jobid;
		l->canceled = canceled;
		l->outcome.set = false;
		if (outcome != NULL)
			l->outcome = *outcome;
		break;
	}
}

void
la_lost_add(Oid dboid, Oid tasks_relid, int64 jobid, bool canceled)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_lost_put(dboid, tasks_relid, jobid, canceled, NULL);
	SpinLockRelease(&la_shmem->mutex);
}

int
la_lost_list(Oid dboid, LaLostView *views, int max)
{
	int			n = 0;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < LA_LOST && n < max; i++)
	{
		LaLost	   *l = &la_shmem->lost[i];

		if (l->jobid == 0 || l->dboid != dboid)
			continue;
		views[n].jobid = l->jobid;
		views[n].tasks_relid = l->tasks_relid;
		views[n].canceled = l->canceled;
		views[n].outcome = l->outcome;
		n++;
	}
	SpinLockRelease(&la_shmem->mutex);
	return n;
}

/* Only the jobids of a database's lost tasks (no outcome copied under the lock). */
int
la_lost_jobids(Oid dboid, int64 *jobids, int max)
{
	int			n = 0;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < LA_LOST && n < max; i++)
		if (la_shmem->lost[i].jobid != 0 && la_shmem->lost[i].dboid == dboid)
			jobids[n++] = la_shmem->lost[i].jobid;
	SpinLockRelease(&la_shmem->mutex);
	return n;
}

void
la_lost_remove(Oid dboid, int64 jobid, Oid tasks_relid)
{
	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < LA_LOST; i++)
	{
		LaLost	   *l = &la_shmem->lost[i];

		if (l->jobid == jobid && l->dboid == dboid && l->tasks_relid == tasks_relid)
			l->jobid = 0;
	}
	SpinLockRelease(&la_shmem->mutex);
}

/* A dropped database's lost tasks went with it. */
void
la_lost_forget_database(Oid dboid)
{
	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < LA_LOST; i++)
		if (la_shmem->lost[i].dboid == dboid)
			la_shmem->lost[i].jobid = 0;
	SpinLockRelease(&la_shmem->mutex);
}
