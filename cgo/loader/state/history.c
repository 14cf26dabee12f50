/*
 * history.c - when a database's finished tasks fall due for deletion: the
 * inbox between the commits and scouts that learn it and the launcher
 *
 * lantern_async.history_retention deletes finished rows once they are that
 * old.  No process of ours stays connected to a database to watch the
 * clock: each commit that finishes tasks notes its time here, a scout
 * notes what it found (the earliest finish left), and the launcher, which
 * reads only shared memory, takes what was noted every round into a record
 * of its own memory (control.History), with one entry per database
 * whatever their number, and asks for a scout of a database once the
 * earliest finish plus the retention has passed.
 *
 * This inbox holds one entry per database noted since the launcher last
 * took it (LA_HISTORIES): a round follows every process exit and at most
 * 10 s, so it overflows only if more databases than that finish tasks in
 * between.  Then history_overflow makes the launcher scout every database
 * once, outside the demand board (control.sweepQueue), whose scouts note
 * each one again: no note is lost for good, and the scouts' notes, at most
 * one per slot between two rounds, never overflow it themselves.
 *
 * A scout's finding must not erase a commit's note it could not see
 * (issue 17, item 5): every note takes a number (history_notes), and a
 * scout reads the count before its look's snapshot (la_history_look).  A
 * note's commit is visible before the note is made (XACT_EVENT_COMMIT
 * comes after ProcArrayEndTransaction), so a note numbered at or below the
 * scout's count was visible to the look, which saw its rows; one numbered
 * above it may not have been, and is kept: la_history_set clears only the
 * notes at or below the count, here, and the launcher keeps those above
 * it that it took before (control.History.Apply).
 */
#include "postgres.h"

#include "storage/lwlock.h"

#include "state/la_state.h"
#include "state/la_state_internal.h"

/* The caller holds board_lock exclusively.  NULL when the inbox is full. */
static LaHistory *
la_history_entry(Oid dboid)
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
	if (free_entry != NULL)
	{
		memset(free_entry, 0, sizeof(*free_entry));
		free_entry->dboid = dboid;
	}
	else
		la_shmem->history_overflow = true;
	return free_entry;
}

/* Tasks of dboid finished at 'finished' (a commit, from any backend: never errors). */
void
la_history_note(Oid dboid, TimestampTz finished)
{
	LaHistory  *h;

	if (la_shmem == NULL)
		return;
	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	h = la_history_entry(dboid);
	if (h != NULL)
	{
		if (h->finished == 0 || finished < h->finished)
			h->finished = finished;
		h->note_gen = ++la_shmem->history_notes;
	}
	LWLockRelease(la_shmem->board_lock);
}

/* The count of notes so far: a scout reads it before its look's snapshot. */
uint64
la_history_look(void)
{
	uint64		notes;

	LWLockAcquire(la_shmem->board_lock, LW_SHARED);
	notes = la_shmem->history_notes;
	LWLockRelease(la_shmem->board_lock);
	return notes;
}

/*
 * A scout's finding in its database: the earliest finish left (0: none),
 * whether rows due are left (a user holds them locked), and the count of
 * notes before its look.
 */
void
la_history_set(Oid dboid, TimestampTz oldest, bool still_due, uint64 look)
{
	LaHistory  *h;

	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	h = la_history_entry(dboid);
	if (h != NULL)
	{
		if (h->note_gen <= look)
			h->finished = 0;	/* noted before the look: it saw them */
		h->set = true;
		h->oldest = oldest;
		h->still_due = still_due;
		h->look = look;
	}
	LWLockRelease(la_shmem->board_lock);
}

/*
 * The launcher takes what was noted since it last did (at most max
 * entries, LA_HISTORIES fit), and whether the inbox overflowed meanwhile.
 */
int
la_history_take(LaHistoryView *views, int max, bool *overflow)
{
	int			n = 0;

	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	for (int i = 0; i < LA_HISTORIES && n < max; i++)
	{
		LaHistory  *h = &la_shmem->histories[i];

		if (h->dboid == InvalidOid)
			continue;
		views[n].dboid = h->dboid;
		views[n].finished = h->finished;
		views[n].note_gen = h->note_gen;
		views[n].set = h->set;
		views[n].oldest = h->oldest;
		views[n].still_due = h->still_due;
		views[n].look = h->look;
		h->dboid = InvalidOid;
		n++;
	}
	*overflow = la_shmem->history_overflow;
	la_shmem->history_overflow = false;
	LWLockRelease(la_shmem->board_lock);
	return n;
}

int
la_history_capacity(void)
{
	return LA_HISTORIES;
}
