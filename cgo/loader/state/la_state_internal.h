/*
 * la_state_internal.h - the layout of lantern_async's shared memory,
 * private to the files of state/ (make layers refuses any other includer)
 *
 * One segment (shmem.c creates it) holds every structure but the waiters'
 * table (waiters.c); each structure below names the file that owns it and
 * the lock that guards it (la_state.h has the table).
 *
 * One slot per task that may run at once (lantern_async.max_workers).  The
 * launcher reserves a slot before it launches a worker and frees it after
 * the worker is gone, so a slot's jobid tells, even after its process died,
 * which task it was running.  Everything is a short critical section under
 * one spinlock, around small fixed-size state: no PostgreSQL call, and no
 * copy of an outcome's message, runs while it is held.  The lost list and
 * its outcomes have an LWLock of their own.
 */
#ifndef LA_STATE_INTERNAL_H
#define LA_STATE_INTERNAL_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "state/la_state.h"

/* A worker slot: slots.c, slot_job.c, slot_wake.c, slot_cancel.c; under mutex. */
typedef struct LaSlot
{
	LaSlotState state;
	LaSlotKind	kind;
	bool		start_sweep;	/* a scout's first sweep after a server start */
	Oid			dboid;
	Oid			roleid;
	int			pid;
	Oid			tasks_relid;
	bool		clean_exit;
	bool		finishing;		/* the task's outcome is being committed: too late to cancel */
	bool		retire;			/* the slot is needed elsewhere, or its database is
								 * being dropped: exit instead of claiming or waiting */
	int			procno;			/* the worker's PGPROC, for its latch; -1 when none */
	uint32		generation;		/* bumped at each reserve; its process must bring it
								 * (bgw_extra) to attach: see la_slot_attach */
	int64		tasks_run;
	TimestampTz started;		/* when jobid was claimed */
	LaOutcome	parked;			/* an outcome its worker could not record */
	/* Atomics: the worker's cancel handler reads them without the lock. */
	pg_atomic_uint64 jobid;		/* task being run, 0 when none */
	pg_atomic_uint64 cancel_jobid;	/* task lantern.cancel_task() stopped, 0 when none */
} LaSlot;

/*
 * The demand board (demand.c, under board_lock): where committed work may
 * be waiting.  An entry (database, role) says that role may have pending
 * tasks there; an entry with roleid InvalidOid asks for a scout of the
 * database.  Submits add entries at commit, workers and scouts remove them
 * once they looked and found nothing; the launcher reads them instead of
 * any table.
 */
#define LA_DEMANDS 512

typedef struct LaDemand
{
	bool		in_use;
	bool		fresh;			/* work was noted since the last worker looked */
	Oid			dboid;
	Oid			roleid;
	uint64		seq;			/* order of first noting: oldest first */
	int64		hint;			/* tasks believed pending, for parallelism only */
	TimestampTz due;			/* the earliest its work may start (a run_after, a
								 * retry's time); 0, or any past time: now */
} LaDemand;

/*
 * A task whose worker ended while running it, until a scout of its database
 * settles it (lost.c, under lost_lock).  If the list is full, the scout's
 * sweep still fails the task (as 'failed' even if a cancel had been
 * accepted).
 */
#define LA_LOST LA_LOST_MAX_VIEWS

typedef struct LaLost
{
	Oid			dboid;
	Oid			tasks_relid;
	int64		jobid;			/* 0: entry unused */
	bool		canceled;		/* cancel_task() had accepted a cancel of it */
	LaOutcome	outcome;		/* its worker's own outcome, when it parked one */
} LaLost;

/* A database a DROP/ALTER/CREATE DATABASE waits to have to itself (blocks.c, under mutex). */
#define LA_BLOCKS 64

typedef struct LaBlock
{
	Oid			dboid;			/* InvalidOid: unused */
	int			pid;			/* the backend running the command */
	TimestampTz until;			/* safety net if that backend never unblocks */
} LaBlock;

/*
 * The history inbox (history.c, under board_lock): per database, what
 * commits and scouts noted about its finished tasks since the launcher
 * last took it.
 */
#define LA_HISTORIES 512

typedef struct LaHistory
{
	Oid			dboid;			/* InvalidOid: unused */
	TimestampTz finished;		/* earliest finish commits noted; 0: none */
	uint64		note_gen;		/* number of the latest note */
	bool		set;			/* a scout noted its finding: */
	TimestampTz oldest;			/* the earliest finish left (0: none) */
	bool		still_due;		/* rows due left, locked by someone */
	uint64		look;			/* notes counted before its look */
} LaHistory;

typedef struct LaShmem
{
	slock_t		mutex;			/* slots, blocks, launcher */
	int			launcher_procno;	/* -1 while no launcher runs */
	bool		reconciled;		/* the start sweep was planned since start */
	LWLock	   *board_lock;		/* the demand board and the history inbox */
	LWLock	   *lost_lock;		/* lost[]: its outcomes are too large to copy under mutex */
	uint64		demand_seq;
	bool		demand_overflow;	/* an entry did not fit: scout every database */
	LaDemand	demands[LA_DEMANDS];
	LaBlock		blocks[LA_BLOCKS];
	LaLost		lost[LA_LOST];
	uint64		history_notes;	/* notes made so far (history.c) */
	bool		history_overflow;	/* a note found the inbox full */
	LaHistory	histories[LA_HISTORIES];
	int			nslots;
	LaSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} LaShmem;

extern LaShmem *la_shmem;

/* blocks.c; the caller holds la_shmem->mutex (slots.c reserves under it) */
extern bool la_block_holds(Oid dboid, TimestampTz now);

/* lost.c; takes lost_lock, so never under la_shmem->mutex */
extern void la_lost_put(Oid dboid, Oid tasks_relid, int64 jobid, bool canceled,
						const LaOutcome *outcome);

#endif							/* LA_STATE_INTERNAL_H */
