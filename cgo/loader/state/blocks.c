/*
 * blocks.c - the databases a DROP/ALTER/CREATE DATABASE waits to have to
 * itself
 *
 * The utility hook (hooks/dbguard.c) adds a block before PostgreSQL looks
 * for other sessions, and ends it when the command's transaction ends.
 * While it holds, no slot is reserved into the database: slots.c checks
 * la_block_holds under the same spinlock as it reserves, so either the
 * slot came first, and the guard waits for its process to leave, or the
 * block came first and nothing is launched.  The launcher reads the blocks
 * too (la_database_blocked), to hold back a demand rather than fail it.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "state/la_state.h"
#include "state/la_state_internal.h"

/* A block outlives its command only if that backend never ended its transaction. */
#define LA_BLOCK_MAX_SECS 300

/*
 * A block lasts this long after the command's transaction ends: the commit
 * callback runs before the transaction sends its catalog invalidations and
 * releases its locks, so a launcher woken by it could still see a dropped
 * database in its caches.
 */
#define LA_BLOCK_GRACE_MS 100

/* The caller holds la_shmem->mutex (slots.c reserves no slot into a blocked database). */
bool
la_block_holds(Oid dboid, TimestampTz now)
{
	for (int i = 0; i < LA_BLOCKS; i++)
		if (la_shmem->blocks[i].dboid == dboid && la_shmem->blocks[i].until > now)
			return true;
	return false;
}

bool
la_database_blocked(Oid dboid)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		blocked;

	SpinLockAcquire(&la_shmem->mutex);
	blocked = la_block_holds(dboid, now);
	SpinLockRelease(&la_shmem->mutex);
	return blocked;
}

/* Block launches into the database until this backend's transaction ends. */
void
la_block_add(Oid dboid)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = TimestampTzPlusMilliseconds(now, LA_BLOCK_MAX_SECS * 1000);

	LaBlock    *free = NULL;

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < LA_BLOCKS && free == NULL; i++)
	{
		LaBlock    *b = &la_shmem->blocks[i];

		/* One entry per database and backend, however often it is renamed. */
		if (b->dboid == dboid && b->pid == MyProcPid)
			free = b;
	}
	for (int i = 0; i < LA_BLOCKS && free == NULL; i++)
	{
		LaBlock    *b = &la_shmem->blocks[i];

		if (!OidIsValid(b->dboid) || b->until <= now)
			free = b;
	}
	/* With every entry taken, the guard's wait still evicts our processes. */
	if (free != NULL)
	{
		free->dboid = dboid;
		free->pid = MyProcPid;
		free->until = until;
	}
	SpinLockRelease(&la_shmem->mutex);
}

/* The command's transaction ended: its blocks end after the grace period. */
void
la_block_release_mine(void)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LA_BLOCK_GRACE_MS);

	SpinLockAcquire(&la_shmem->mutex);
	for (int i = 0; i < LA_BLOCKS; i++)
		if (la_shmem->blocks[i].pid == MyProcPid && OidIsValid(la_shmem->blocks[i].dboid))
		{
			la_shmem->blocks[i].until = Min(la_shmem->blocks[i].until, until);
			la_shmem->blocks[i].pid = 0;
		}
	SpinLockRelease(&la_shmem->mutex);
}
