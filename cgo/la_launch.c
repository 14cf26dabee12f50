/*
 * la_launch.c - the dispatcher's side of worker processes: launching them
 * into slots, reading the slots, and reaping the slots of those that ended
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/memutils.h"

#include "la_call.h"
#include "la_shared.h"

/* Handles live in the dispatcher's memory; indexes match the slots. */
static BackgroundWorkerHandle **la_handles = NULL;

static void
la_launch_register(uint32_t roleid, int slot)
{
	BackgroundWorker worker;
	MemoryContext oldcxt;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, LA_LIBRARY_NAME);
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "lantern_async_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, LA_WORKER_TYPE " %d", slot);
	snprintf(worker.bgw_type, BGW_MAXLEN, LA_WORKER_TYPE);
	worker.bgw_main_arg = Int32GetDatum(slot);
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
 * Start a worker that runs the pending tasks of one role in this database.
 * Returns its slot, or -1 when no slot or no background worker process is
 * free (the dispatcher tries again on its next round) or on error.
 */
int
la_launch_worker(uint32_t roleid, LaError *err)
{
	volatile int slot;
	int			saved_holdoff = InterruptHoldoffCount;
	int			saved_cancel_holdoff = QueryCancelHoldoffCount;

	if (!la_call_begin(err))
		return -1;
	slot = la_slot_reserve(MyDatabaseId, (Oid) roleid);
	if (slot < 0)
		return -1;
	PG_TRY();
	{
		la_launch_register(roleid, slot);
	}
	PG_CATCH();
	{
		la_call_fail(err, saved_holdoff, saved_cancel_holdoff);
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

/* Never errors: GetBackgroundWorkerPid only reads shared memory. */
static bool
la_launch_stopped(int index)
{
	pid_t		pid;

	return la_handles != NULL && la_handles[index] != NULL &&
		GetBackgroundWorkerPid(la_handles[index], &pid) == BGWH_STOPPED;
}

/*
 * Free the slots of workers that are gone and return their last state
 * (role, the task they were running if any, whether they ended normally).
 * Only shared-memory reads and pfree of our own handles: nothing that can
 * raise an ERROR.
 */
int
la_reap_workers(LaSlotView *ended, int max)
{
	int			nended = 0;

	for (int i = 0; i < la_slot_count() && nended < max; i++)
	{
		LaSlotView view;

		la_slot_view(i, &view);
		if (view.state == LA_SLOT_FREE)
			continue;
		if (view.state != LA_SLOT_EXITED && !la_launch_stopped(i))
			continue;
		ended[nended++] = view;
		if (la_handles != NULL && la_handles[i] != NULL)
		{
			pfree(la_handles[i]);
			la_handles[i] = NULL;
		}
		la_slot_release(i);
	}
	return nended;
}
