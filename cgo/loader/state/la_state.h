/*
 * la_state.h - the state/ layer: lantern_async's shared memory
 *
 * Every structure has one owner file, the only one that reads or writes it,
 * and one lock (the layout, private to this folder, is in
 * la_state_internal.h):
 *
 *   slots        slots.c, slot_job.c, slot_wake.c,   la_shmem->mutex (a spinlock);
 *                slot_cancel.c                       jobid and cancel_jobid are
 *                                                    also atomics, read unlocked
 *   blocks       blocks.c                            la_shmem->mutex
 *   launcher     shmem.c (its latch, reconciled)     la_shmem->mutex
 *   demand board demand.c                            la_shmem->board_lock (LWLock)
 *   history      history.c                           la_shmem->board_lock
 *   lost list    lost.c                              la_shmem->lost_lock (LWLock)
 *   waiters      waiters.c (a segment of its own)    atomics and memory barriers
 *
 * No PostgreSQL call and no copy of an outcome's message runs under the
 * spinlock; an LWLock is never taken while the spinlock is held.  Nothing
 * here calls up into tables/, hooks/, functions/ or entry/: a file above
 * that must be told of something here reads it (la_database_blocked) or
 * is woken by a latch.
 */
#ifndef LA_STATE_H
#define LA_STATE_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "base/la_base.h"

/*
 * What runs in a slot: a worker runs one role's tasks in one database; a
 * scout sweeps one database (fails what can never run or was left running,
 * and notes the roles with pending tasks on the demand board).
 */
typedef enum LaSlotKind
{
	LA_KIND_WORKER = 0,
	LA_KIND_SCOUT
} LaSlotKind;

/* Lifecycle of a worker slot; only the launcher frees or allocates one. */
typedef enum LaSlotState
{
	LA_SLOT_FREE = 0,
	LA_SLOT_LAUNCHING,			/* registered, process not attached yet */
	LA_SLOT_ACTIVE,				/* process attached to the slot */
	LA_SLOT_EXITED				/* process gone; the launcher has not reaped it */
} LaSlotState;

/* A copy of one slot, taken under the lock. */
typedef struct LaSlotView
{
	int			index;
	LaSlotState state;
	LaSlotKind	kind;
	Oid			dboid;
	Oid			roleid;
	int			pid;
	int64		jobid;			/* task being run, 0 when none */
	Oid			tasks_relid;	/* the lantern.tasks it was claimed from */
	bool		cancel_requested;	/* lantern.cancel_task() accepted for jobid */
	bool		clean_exit;		/* the worker ran out of tasks and ended normally */
	bool		retiring;		/* asked to give the slot up */
	bool		parked;			/* it left its task's outcome for a scout (reaping moves it to the lost list) */
	int64		tasks_run;		/* tasks the worker finished */
} LaSlotView;

/* What la_slot_set_job replaced, for la_slot_unset_job when the claim fails. */
typedef struct LaSlotJob
{
	uint64		jobid;
	uint64		cancel_jobid;
	Oid			tasks_relid;
	bool		finishing;
	int64		tasks_run;
	TimestampTz started;
} LaSlotJob;

/* One entry of the demand board (demand.c), as the launcher reads it. */
typedef struct LaDemandView
{
	Oid			dboid;
	Oid			roleid;			/* InvalidOid: a scout of the database is wanted */
	uint64		seq;			/* smaller: noted earlier */
	int64		hint;			/* tasks believed pending */
	TimestampTz due;			/* not to be served before; 0 or past: now */
} LaDemandView;

/*
 * A task's outcome that its worker could not record (the queue's table
 * could not be locked in time) and left in shared memory for a scout.
 */
#define LA_PARKED_MESSAGE 2048

typedef struct LaOutcome
{
	bool		set;
	char		status[16];
	char		sqlstate[6];
	char		message[LA_PARKED_MESSAGE];	/* truncated if longer */
} LaOutcome;

/* A task whose worker ended while running it (lost.c); at most this many at once. */
#define LA_LOST_MAX_VIEWS 64

typedef struct LaLostView
{
	int64		jobid;
	Oid			tasks_relid;
	bool		canceled;
	LaOutcome	outcome;		/* set: the worker's own outcome, to record as is */
} LaLostView;

/* history.c: when finished tasks fall due for lantern_async.history_retention */
typedef struct LaHistoryView
{
	Oid			dboid;
	TimestampTz finished;		/* earliest finish commits noted; 0: none */
	uint64		note_gen;		/* number of the latest such note */
	bool		set;			/* a scout's finding follows: */
	TimestampTz oldest;			/* earliest finish left; 0: none */
	bool		still_due;		/* rows due left that someone holds locked */
	uint64		look;			/* notes counted before its look */
} LaHistoryView;

/* The tasks running in a database, for lantern.running_tasks() (slot_job.c) */
typedef struct LaRunning
{
	int64		jobid;
	int			pid;
	Oid			roleid;
	TimestampTz started;
} LaRunning;

/* The segment, the launcher's latch and the reconciliation flag (shmem.c) */
extern void la_shmem_install_hooks(void);
extern bool la_shmem_attached(void);
extern void la_launcher_attach(void);
extern PGDLLEXPORT void la_launcher_wake(void);
extern PGDLLEXPORT bool la_reconcile_needed(void);
extern PGDLLEXPORT void la_reconcile_done(void);

/* A slot's life: reserved, launched, attached, exited, reaped (slots.c) */
extern PGDLLEXPORT int la_slot_count(void);
extern PGDLLEXPORT void la_slot_view(int index, LaSlotView *view);
extern PGDLLEXPORT int la_slot_reserve(LaSlotKind kind, Oid dboid, Oid roleid, bool start_sweep);
extern PGDLLEXPORT void la_slot_release(int index);
extern PGDLLEXPORT uint32 la_slot_generation(int index);
extern PGDLLEXPORT bool la_slot_reclaim(int index, LaSlotView *view);
extern PGDLLEXPORT void la_slot_reap(int index, LaSlotView *view);
extern void la_slot_attach(int index);
extern void la_slot_mark_clean(int index);
extern void la_slot_target(int index, LaSlotKind *kind, Oid *dboid, Oid *roleid);
extern PGDLLEXPORT bool la_slot_start_sweep(int index);

/* The task a slot runs, and its outcome parked there (slot_job.c) */
extern PGDLLEXPORT bool la_slot_set_job(int index, int64 jobid, Oid tasks_relid, bool finished_one,
										 LaSlotJob *prior);
extern PGDLLEXPORT void la_slot_unset_job(int index, int64 jobid, const LaSlotJob *prior);
extern PGDLLEXPORT void la_slot_task_done(int index);
extern PGDLLEXPORT void la_slot_tasks_decided(int index, int64 ntasks);
extern PGDLLEXPORT void la_slot_park(int index, const char *status, const char *sqlstate,
									 const char *message);
extern void la_slot_park_fatal(int index, const char *sqlstate, const char *message);
extern bool la_slot_names_job(int index);
extern PGDLLEXPORT int la_slot_live_jobs(Oid dboid, int64 *jobids, int max);
extern int	la_slot_running(Oid dboid, Oid tasks_relid, LaRunning *out, int max);

/* Waking, retiring and evicting the processes in slots (slot_wake.c) */
extern PGDLLEXPORT void la_slot_wake(int index);
extern PGDLLEXPORT void la_slot_retire(int index);
extern PGDLLEXPORT bool la_slot_retiring(int index);
extern int	la_slot_wake_idle(Oid dboid, Oid roleid);
extern void la_slot_evict_database(Oid dboid);
extern int	la_slot_count_idle_in_database(Oid dboid);

/* Cancels of running tasks (slot_cancel.c) */
extern PGDLLEXPORT bool la_slot_begin_finishing(int index, int64 jobid);
extern bool la_slot_cancel_job(int64 jobid, Oid tasks_relid);
extern void la_slot_cancel_role(Oid roleid, Oid tasks_relid);
extern PGDLLEXPORT bool la_slot_cancel_requested(int index, int64 jobid);
extern bool la_slot_cancel_is_current(int index);

/*
 * Databases a DROP/ALTER/CREATE DATABASE waits to have to itself (blocks.c):
 * no slot is reserved into one (slots.c checks under the same lock).
 */
extern void la_block_add(Oid dboid);
extern void la_block_release_mine(void);
extern PGDLLEXPORT bool la_database_blocked(Oid dboid);

/* Tasks whose worker ended while running them (lost.c) */
extern PGDLLEXPORT void la_lost_add(Oid dboid, Oid tasks_relid, int64 jobid, bool canceled);
extern PGDLLEXPORT int la_lost_list(Oid dboid, LaLostView *views, int max);
extern PGDLLEXPORT int la_lost_jobids(Oid dboid, int64 *jobids, int max);
extern PGDLLEXPORT void la_lost_remove(Oid dboid, int64 jobid, Oid tasks_relid);
extern PGDLLEXPORT void la_lost_forget_database(Oid dboid);

/* The demand board (demand.c) */
extern PGDLLEXPORT void la_demand_note(Oid dboid, Oid roleid, int64 ntasks);
extern PGDLLEXPORT void la_demand_note_at(Oid dboid, Oid roleid, int64 ntasks, TimestampTz due);
/* commit_notes.c: one more task of roleid queued in this transaction, noted at its commit (due 0: now) */
extern void la_demand_note_at_commit(Oid roleid, TimestampTz due);
extern PGDLLEXPORT void la_demand_note_pending(Oid dboid, Oid roleid, int64 pending, TimestampTz due);
extern PGDLLEXPORT void la_demand_looking(Oid dboid, Oid roleid);
extern PGDLLEXPORT void la_demand_claimed(Oid dboid, Oid roleid);
extern PGDLLEXPORT bool la_demand_settled(Oid dboid, Oid roleid, TimestampTz next_due);
extern PGDLLEXPORT void la_demand_forget(Oid dboid, Oid roleid);
extern PGDLLEXPORT void la_demand_forget_database(Oid dboid);
extern PGDLLEXPORT int la_demand_read(LaDemandView *views, int max);
extern PGDLLEXPORT bool la_demand_take_overflow(void);
extern PGDLLEXPORT int la_demand_capacity(void);

/* The history inbox (history.c) */
extern void la_history_note(Oid dboid, TimestampTz finished);
extern PGDLLEXPORT uint64 la_history_look(void);
extern PGDLLEXPORT void la_history_set(Oid dboid, TimestampTz oldest, bool still_due, uint64 look);
extern PGDLLEXPORT int la_history_take(LaHistoryView *views, int max, bool *overflow);
extern PGDLLEXPORT int la_history_capacity(void);

/*
 * The waiters of lantern.wait_task(), one entry per backend (waiters.c):
 * every final status goes through la_wait_note_finished, whose commit
 * wakes them.
 */
extern Size la_wait_shmem_size(void);
extern void la_wait_shmem_init(void);
extern void la_wait_register(int64 jobid);
extern void la_wait_unregister(void);
extern void la_wait_note_finished(int64 jobid);
extern void la_wait_wake_database(void);

#endif							/* LA_STATE_H */
