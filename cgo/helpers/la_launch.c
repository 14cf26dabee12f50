/*
 * la_launch.c - the launcher's side of worker and scout processes:
 * launching them into slots, reading the slots, and reaping the slots of
 * those that ended
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/memutils.h"

#include "la_call.h"
#include "entry/la_entry.h"
#include "state/la_state.h"

/* Handles live in the launcher's memory; indexes match the slots. */
static BackgroundWorkerHandle **la_handles = NULL;

static void
la_launch_register(bool scout, int slot)
{
	BackgroundWorker worker;
	MemoryContext oldcxt;
	char		name[BGW_MAXLEN];
	const char *type = scout ? LA_SCOUT_TYPE : LA_WORKER_TYPE;
	uint32		generation;

	snprintf(name, sizeof(name), "%s %d", type, slot);
	la_worker_describe(&worker, scout ? "lantern_async_scout_main" : "lantern_async_worker_main",
					   type, name, BGW_NEVER_RESTART);
	worker.bgw_main_arg = Int32GetDatum(slot);
	/* The slot's reservation: only a process that brings it attaches (loader/state/slots.c). */
	generation = la_slot_generation(slot);
	memcpy(worker.bgw_extra, &generation, sizeof(generation));
	/* The postmaster signals us when it starts or stops: a wake-up to reap. */
	worker.bgw_notify_pid = MyProcPid;

	/* Handles are palloc'd: they must outlive the per-task context. */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (la_handles == NULL)
		la_handles = palloc0(sizeof(BackgroundWorkerHandle *) * la_slot_count());
	if (!RegisterDynamicBackgroundWorker(&worker, &la_handles[slot]))
		la_handles[slot] = NULL;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Start a worker that runs the pending tasks of one role in a database, or
 * with roleid 0 a scout of the database.  Returns its slot, or -1 when no
 * slot or no background worker process is free (the launcher tries again
 * on its next round) or on error.
 */
int
la_launch(uint32_t dboid, uint32_t roleid, bool start_sweep, LaError *err)
{
	volatile int slot;
	LaSaved		saved;
	bool		scout = roleid == 0;

	if (!la_call_begin(err))
		return -1;
	la_save(&saved);
	slot = la_slot_reserve(scout ? LA_KIND_SCOUT : LA_KIND_WORKER, (Oid) dboid, (Oid) roleid,
						   start_sweep);
	if (slot < 0)
		return -1;
	PG_TRY();
	{
		la_launch_register(scout, slot);
	}
	PG_CATCH();
	{
		la_call_fail(err, &saved);
		if (la_handles != NULL)
			la_handles[slot] = NULL;
	}
	PG_END_TRY();
	if (la_handles == NULL || la_handles[slot] == NULL)
	{
		la_slot_release(slot);
		return -1;
	}
	return slot;
}

/* Copies the slots in use into views; returns how many. One call per round. */
int
la_read_slots(LaSlotView *views, int max)
{
	int			n = 0;

	for (int i = 0; i < la_slot_count() && n < max; i++)
	{
		la_slot_view(i, &views[n]);
		if (views[n].state != LA_SLOT_FREE)
			n++;
	}
	return n;
}

/* GetBackgroundWorkerPid takes BackgroundWorkerLock: call it inside PG_TRY. */
static bool
la_launch_stopped(int index)
{
	pid_t		pid;

	return la_handles != NULL && la_handles[index] != NULL &&
		GetBackgroundWorkerPid(la_handles[index], &pid) == BGWH_STOPPED;
}

/*
 * Free one slot if its process is gone; true when it was.  Gone means the
 * postmaster reaped it: a process marks its slot exited in an exit callback,
 * while it still holds its PGPROC and its background-worker slot, so a slot
 * freed then would let the next launch run beside it (more than max_workers
 * processes at once).  Only a slot the launcher has no handle for (started
 * by a previous launcher process) goes by the slot's own mark; one of those
 * still LAUNCHING is reclaimed (la_slot_reclaim): this launcher never
 * leaves a slot of its own LAUNCHING without a handle between two calls,
 * so such a slot is a previous launcher's, and nobody else would ever
 * learn whether its process started.
 */
static bool
la_reap_one(int index, LaSlotView *ended)
{
	/*
	 * Ask the postmaster first, read the slot after: a worker that claims a
	 * task and dies between the two is then seen with its jobid, and its
	 * task is failed now rather than at the next server start.
	 */
	bool		handled = la_handles != NULL && la_handles[index] != NULL;
	bool		stopped = la_launch_stopped(index);
	LaSlotView	view;

	la_slot_view(index, &view);
	if (view.state == LA_SLOT_FREE)
		return false;
	if (!handled && view.state == LA_SLOT_LAUNCHING)
		return la_slot_reclaim(index, ended);
	if (handled ? !stopped : view.state != LA_SLOT_EXITED)
		return false;
	la_slot_reap(index, ended);
	if (la_handles != NULL && la_handles[index] != NULL)
	{
		pfree(la_handles[index]);
		la_handles[index] = NULL;
	}
	return true;
}

/*
 * Free the slots of workers that are gone and return their last state
 * (role, the task they were running if any, whether they ended normally).
 * Returns -1 on error.
 */
int
la_reap_workers(LaSlotView *ended, int max, LaError *err)
{
	volatile int nended = 0;
	LaSaved		saved;

	if (!la_call_begin(err))
		return -1;
	la_save(&saved);
	PG_TRY();
	{
		for (int i = 0; i < la_slot_count() && nended < max; i++)
			if (la_reap_one(i, &ended[nended]))
				nended++;
	}
	PG_CATCH();
	{
		la_call_fail(err, &saved);
		nended = -1;
	}
	PG_END_TRY();
	return nended;
}
