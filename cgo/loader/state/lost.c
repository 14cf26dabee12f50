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

#include "storage/lwlock.h"

#include "state/la_state.h"
#include "state/la_state_internal.h"

/*
 * Under lost_lock, not the slots' spinlock: an entry holds an outcome of
 * about 2 kB, and a scout copies up to LA_LOST of them (135 kB) at once.
 * Nothing here can raise an error.  When the list is full the task is not
 * recorded: the scout's sweep still fails it (as failed, whatever its
 * outcome was).
 */
void
la_lost_put(Oid dboid, Oid tasks_relid, int64 jobid, bool canceled, const LaOutcome *outcome)
{
	LWLockAcquire(la_shmem->lost_lock, LW_EXCLUSIVE);
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
	LWLockRelease(la_shmem->lost_lock);
}

void
la_lost_add(Oid dboid, Oid tasks_relid, int64 jobid, bool canceled)
{
	la_lost_put(dboid, tasks_relid, jobid, canceled, NULL);
}

int
la_lost_list(Oid dboid, LaLostView *views, int max)
{
	int			n = 0;

	LWLockAcquire(la_shmem->lost_lock, LW_SHARED);
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
	LWLockRelease(la_shmem->lost_lock);
	return n;
}

/* Only the jobids of a database's lost tasks. */
int
la_lost_jobids(Oid dboid, int64 *jobids, int max)
{
	int			n = 0;

	LWLockAcquire(la_shmem->lost_lock, LW_SHARED);
	for (int i = 0; i < LA_LOST && n < max; i++)
		if (la_shmem->lost[i].jobid != 0 && la_shmem->lost[i].dboid == dboid)
			jobids[n++] = la_shmem->lost[i].jobid;
	LWLockRelease(la_shmem->lost_lock);
	return n;
}

void
la_lost_remove(Oid dboid, int64 jobid, Oid tasks_relid)
{
	LWLockAcquire(la_shmem->lost_lock, LW_EXCLUSIVE);
	for (int i = 0; i < LA_LOST; i++)
	{
		LaLost	   *l = &la_shmem->lost[i];

		if (l->jobid == jobid && l->dboid == dboid && l->tasks_relid == tasks_relid)
			l->jobid = 0;
	}
	LWLockRelease(la_shmem->lost_lock);
}

/* A dropped database's lost tasks went with it. */
void
la_lost_forget_database(Oid dboid)
{
	LWLockAcquire(la_shmem->lost_lock, LW_EXCLUSIVE);
	for (int i = 0; i < LA_LOST; i++)
		if (la_shmem->lost[i].dboid == dboid)
			la_shmem->lost[i].jobid = 0;
	LWLockRelease(la_shmem->lost_lock);
}
