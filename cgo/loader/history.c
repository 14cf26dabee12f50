/*
 * history.c - when a database's finished tasks fall due for deletion
 *
 * lantern_async.history_retention deletes finished rows once they are that
 * old.  No process of ours stays connected to a database to watch the
 * clock: each commit that finishes tasks notes its time here (only an
 * earlier time lowers the entry), and the launcher, which reads only
 * shared memory, asks for a scout of the database once the earliest
 * finish plus the retention has passed.  The scout deletes what is due
 * and sets the entry to the earliest finish left (none: the entry goes).
 * After a start the sweep's scouts set every entry.
 */
#include "postgres.h"

#include "storage/spin.h"
#include "utils/timestamp.h"

#include "la_loader.h"
#include "la_shared.h"
#include "la_slots.h"

/* A scout that found rows due it could not delete (a user holds them locked) waits this long. */
#define LA_HISTORY_RETRY_MS (60 * 1000)

/* The caller holds la_shmem->mutex.  NULL when the table is full. */
static LaHistory *
la_history_entry(Oid dboid, bool create)
{
	LaHistory  *free_entry = NULL;

	for (int i = 0; i < LA_HISTORIES; i++)
	{
		LaHistory  *h = &la_shmem->histories[i];

		if (h->dboid == dboid)
			return h;
		if (h->dboid == InvalidOid && free_entry == NULL)
			free_entry = h;
	}
	if (create && free_entry != NULL)
	{
		free_entry->dboid = dboid;
		free_entry->oldest = 0;
		free_entry->not_before = 0;
	}
	return create ? free_entry : NULL;
}

/*
 * Tasks of dboid finished at 'finished' (a commit).  With more databases
 * than entries, a database without one is found by the next start sweep.
 */
void
la_history_note(Oid dboid, TimestampTz finished)
{
	LaHistory  *h;

	SpinLockAcquire(&la_shmem->mutex);
	h = la_history_entry(dboid, true);
	if (h != NULL && (h->oldest == 0 || finished < h->oldest))
		h->oldest = finished;
	SpinLockRelease(&la_shmem->mutex);
}

/* A scout's finding: the earliest finish left in its database (0: none). */
void
la_history_set(Oid dboid, TimestampTz oldest, bool still_due)
{
	LaHistory  *h;

	SpinLockAcquire(&la_shmem->mutex);
	h = la_history_entry(dboid, oldest != 0);
	if (h != NULL && oldest == 0)
		h->dboid = InvalidOid;
	else if (h != NULL)
	{
		h->oldest = oldest;
		h->not_before = still_due ?
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LA_HISTORY_RETRY_MS) : 0;
	}
	SpinLockRelease(&la_shmem->mutex);
}

/* The databases whose history is due now: at most max, into dbs. */
int
la_history_due(Oid *dbs, int max)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;
	int64		retention_us = (int64) la_history_retention * USECS_PER_SEC;

	if (la_history_retention <= 0)
		return 0;
	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < LA_HISTORIES && n < max; i++)
	{
		LaHistory  *h = &la_shmem->histories[i];

		if (h->dboid != InvalidOid && h->oldest != 0 &&
			h->oldest <= now - retention_us && now >= h->not_before)
			dbs[n++] = h->dboid;
	}
	SpinLockRelease(&la_shmem->mutex);
	return n;
}
