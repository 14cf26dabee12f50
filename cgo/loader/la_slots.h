/*
 * la_slots.h - the layout of lantern_async's shared memory, private to the
 * loader's shmem.c, slots.c and slot_cancel.c
 *
 * One slot per task that may run at once (lantern_async.max_workers).  The
 * dispatcher reserves a slot before it launches a worker and frees it after
 * the worker is gone, so a slot's jobid tells, even after its process died,
 * which task it was running.  Everything is a short critical section under
 * one spinlock: no PostgreSQL call that could ERROR runs while it is held.
 */
#ifndef LA_SLOTS_H
#define LA_SLOTS_H

#include "port/atomics.h"
#include "storage/spin.h"

#include "la_shared.h"

typedef struct LaSlot
{
	LaSlotState state;
	Oid			dboid;
	Oid			roleid;
	int			pid;
	Oid			tasks_relid;
	bool		clean_exit;
	bool		finishing;		/* the task's outcome is being committed: too late to cancel */
	bool		retire;			/* the dispatcher needs the slot: exit instead of waiting */
	int			procno;			/* the worker's PGPROC, for its latch; -1 when none */
	int64		tasks_run;
	/* Atomics: the worker's cancel handler reads them without the lock. */
	pg_atomic_uint64 jobid;		/* task being run, 0 when none */
	pg_atomic_uint64 cancel_jobid;	/* task lantern.cancel_task() stopped, 0 when none */
} LaSlot;

typedef struct LaShmem
{
	slock_t		mutex;
	int			dispatcher_procno;	/* -1 while no dispatcher runs */
	bool		reconciled;		/* crash reconciliation done since start */
	int			nslots;
	LaSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} LaShmem;

extern LaShmem *la_shmem;

#endif							/* LA_SLOTS_H */
