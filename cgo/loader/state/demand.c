/*
 * demand.c - the demand board: where committed work may be waiting
 *
 * A submit's commit says where its work is: it notes (database, role) here
 * and wakes an idle worker of that pair, or the launcher.  So the launcher
 * never polls a table, and a database with nothing queued costs nothing.
 *
 * No wake-up is lost: a worker marks the entry looked-at (clears fresh)
 * *before* it takes the snapshot of its claim, and removes the entry only
 * if nobody noted new work since.  A submit that commits after the clear
 * sets fresh again, so the entry stays and is served; one that committed
 * before it is visible to the claim.
 *
 * The board is an LWLock-protected array of LA_DEMANDS entries, for the
 * commits of submits and the launcher's own notes (a lost task, a database
 * copied): work to start now.  A sweep of every database (after a start, a
 * launcher restart, or an overflow) is not on the board but in the
 * launcher's own memory (control.sweepQueue), whatever the number of
 * databases.  When the board is full, a note sets demand_overflow instead
 * and the launcher queues such a sweep, whose scouts find the work from
 * the tables themselves; a database already queued keeps its place, so
 * the sweep never starts over.
 *
 * An entry may be due later: a task submitted with run_after, or waiting
 * for its retry, may not start before its time.  The launcher serves only
 * entries that are due and naps until the earliest of the others; a worker
 * whose claim finds only later work leaves the entry with that time
 * (la_demand_settled), so that no process waits for it.
 */
#include "postgres.h"

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "state/la_state.h"
#include "state/la_state_internal.h"

/* The caller holds board_lock. */
static LaDemand *
la_demand_find(Oid dboid, Oid roleid)
{
	for (int i = 0; i < LA_DEMANDS; i++)
	{
		LaDemand   *d = &la_shmem->demands[i];

		if (d->in_use && d->dboid == dboid && d->roleid == roleid)
			return d;
	}
	return NULL;
}

/* The caller holds board_lock exclusively; NULL when the board is full. */
static LaDemand *
la_demand_add(Oid dboid, Oid roleid)
{
	for (int i = 0; i < LA_DEMANDS; i++)
	{
		LaDemand   *d = &la_shmem->demands[i];

		if (d->in_use)
			continue;
		d->in_use = true;
		d->dboid = dboid;
		d->roleid = roleid;
		d->seq = ++la_shmem->demand_seq;
		d->hint = 0;
		d->fresh = false;
		d->due = DT_NOEND;
		return d;
	}
	return NULL;
}

static void
la_demand_put(Oid dboid, Oid roleid, int64 ntasks, bool counted, TimestampTz due)
{
	LaDemand   *d;
	int			woken = 0;
	bool		now = due == 0 || due <= GetCurrentTimestamp();

	if (la_shmem == NULL)
		return;
	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	d = la_demand_find(dboid, roleid);
	if (d == NULL)
		d = la_demand_add(dboid, roleid);
	if (d != NULL)
	{
		d->fresh = true;
		d->hint = counted ? Max(d->hint, ntasks) : d->hint + ntasks;
		d->due = Min(d->due, due);
	}
	else
		la_shmem->demand_overflow = true;
	LWLockRelease(la_shmem->board_lock);

	/* Work for later: the launcher naps until the earliest entry is due. */
	if (!now && d != NULL)
	{
		la_launcher_wake();
		return;
	}

	/*
	 * Idle workers of the pair claim the work themselves: the launcher is
	 * needed only for more tasks than they are (or a scout, or a full
	 * board).  An idle worker that exits just now instead leaves the entry
	 * on the board, and its exit wakes the launcher.
	 */
	if (OidIsValid(roleid))
		woken = la_slot_wake_idle(dboid, roleid);
	if (d == NULL || woken == 0 || ntasks > woken)
		la_launcher_wake();
}

/*
 * Note that (dboid, roleid) may have ntasks more pending tasks (roleid
 * InvalidOid: that the database wants a scout).  Called at commit, from any
 * backend: it never errors.
 */
void
la_demand_note(Oid dboid, Oid roleid, int64 ntasks)
{
	la_demand_put(dboid, roleid, ntasks, false, 0);
}

/* The same, for work that may not start before due (a run_after). */
void
la_demand_note_at(Oid dboid, Oid roleid, int64 ntasks, TimestampTz due)
{
	la_demand_put(dboid, roleid, ntasks, false, due);
}

/*
 * A scout counted pending tasks of (dboid, roleid) in the table: that count
 * already includes the ones submits noted, so it raises the hint to it
 * rather than adding to it (a double count would start a worker too many).
 * due: when the earliest of them may start (0: now).
 */
void
la_demand_note_pending(Oid dboid, Oid roleid, int64 pending, TimestampTz due)
{
	la_demand_put(dboid, roleid, pending, true, due);
}

/* A worker or scout is about to look: call before the claim's snapshot. */
void
la_demand_looking(Oid dboid, Oid roleid)
{
	LaDemand   *d;

	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	d = la_demand_find(dboid, roleid);
	if (d != NULL)
		d->fresh = false;
	LWLockRelease(la_shmem->board_lock);
}

/* A worker claimed a task: there may be more, so whoever looks next must. */
void
la_demand_claimed(Oid dboid, Oid roleid)
{
	LaDemand   *d;

	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	d = la_demand_find(dboid, roleid);
	if (d != NULL)
	{
		d->hint = Max(d->hint - 1, 0);
		d->fresh = true;
	}
	LWLockRelease(la_shmem->board_lock);
}

/*
 * A look found nothing to start now: remove the entry, or, when next_due
 * is not 0, keep it for then (the earliest later work the look saw);
 * unless work was noted since the look began (then false: look again).
 */
bool
la_demand_settled(Oid dboid, Oid roleid, TimestampTz next_due)
{
	LaDemand   *d;
	bool		settled = true;

	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	d = la_demand_find(dboid, roleid);
	if (d != NULL && d->fresh)
		settled = false;
	else if (next_due == 0)
	{
		if (d != NULL)
			d->in_use = false;
	}
	else if (d != NULL || (d = la_demand_add(dboid, roleid)) != NULL)
	{
		d->due = next_due;
		d->hint = 1;
	}
	else
		la_shmem->demand_overflow = true;
	LWLockRelease(la_shmem->board_lock);
	/* The launcher's nap may end later than this due: it naps again from it. */
	if (settled && next_due != 0)
		la_launcher_wake();
	return settled;
}

/* The launcher drops an entry nobody can serve (see control.Launcher). */
void
la_demand_forget(Oid dboid, Oid roleid)
{
	LaDemand   *d;

	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	d = la_demand_find(dboid, roleid);
	if (d != NULL)
		d->in_use = false;
	LWLockRelease(la_shmem->board_lock);
}

/* Every entry of a database that no longer exists. */
void
la_demand_forget_database(Oid dboid)
{
	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	for (int i = 0; i < LA_DEMANDS; i++)
		if (la_shmem->demands[i].dboid == dboid)
			la_shmem->demands[i].in_use = false;
	LWLockRelease(la_shmem->board_lock);
}

/* Copy the entries in use; returns how many. */
int
la_demand_read(LaDemandView *views, int max)
{
	int			n = 0;

	LWLockAcquire(la_shmem->board_lock, LW_SHARED);
	for (int i = 0; i < LA_DEMANDS && n < max; i++)
	{
		LaDemand   *d = &la_shmem->demands[i];

		if (!d->in_use)
			continue;
		views[n].dboid = d->dboid;
		views[n].roleid = d->roleid;
		views[n].seq = d->seq;
		views[n].hint = d->hint;
		views[n].due = d->due;
		n++;
	}
	LWLockRelease(la_shmem->board_lock);
	return n;
}

/* True once after a note found the board full. */
bool
la_demand_take_overflow(void)
{
	bool		overflow;

	LWLockAcquire(la_shmem->board_lock, LW_EXCLUSIVE);
	overflow = la_shmem->demand_overflow;
	la_shmem->demand_overflow = false;
	LWLockRelease(la_shmem->board_lock);
	return overflow;
}

int
la_demand_capacity(void)
{
	return LA_DEMANDS;
}
