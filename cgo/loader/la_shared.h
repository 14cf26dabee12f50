/*
 * la_shared.h - what the preloaded C loader shares with the Go library
 *
 * The loader (lantern_async.so) owns shared memory, the GUCs, the lookup of
 * the extension's own objects and the SQL that changes the queue.  The Go
 * library, dlopen()ed later inside each background worker, reaches them
 * through the functions declared here; they resolve at dlopen time because
 * PostgreSQL loads lantern_async.so with RTLD_GLOBAL.  Every function the
 * Go library calls is PGDLLEXPORT: since PostgreSQL 16, PGXS builds with
 * -fvisibility=hidden.
 */
#ifndef LA_SHARED_H
#define LA_SHARED_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "postmaster/bgworker.h"
#include "storage/lockdefs.h"

#define LA_LIBRARY_NAME "lantern_async"
#define LA_EXTENSION_NAME "lantern_async"
#define LA_GO_LIBRARY_FILE "lantern_async_go.so"
#define LA_LAUNCHER_TYPE "lantern_async launcher"
#define LA_WORKER_TYPE "lantern_async worker"
#define LA_SCOUT_TYPE "lantern_async scout"

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

extern PGDLLEXPORT uint64 la_history_look(void);
extern PGDLLEXPORT void la_history_set(Oid dboid, TimestampTz oldest, bool still_due, uint64 look);
extern PGDLLEXPORT int la_history_take(LaHistoryView *views, int max, bool *overflow);
extern PGDLLEXPORT int la_history_capacity(void);

/* GUCs (guc.c) */
extern PGDLLEXPORT char *la_database;
extern PGDLLEXPORT int la_max_workers;
extern PGDLLEXPORT int la_worker_idle_timeout;	/* milliseconds */
extern PGDLLEXPORT int la_history_retention;	/* seconds; 0: keep every finished task */
extern PGDLLEXPORT int la_task_timeout;	/* milliseconds, 0: none */

/* The extension's own objects, found through pg_depend (catalog.c). */
typedef struct LaCatalog
{
	Oid			extension;
	Oid			tasks;			/* lantern.tasks */
	Oid			task_errors;
	Oid			task_owners;
	/* Quoted, schema-qualified names built from the OIDs, for SQL text. */
	char	   *tasks_name;
	char	   *task_errors_name;
	char	   *task_owners_name;
} LaCatalog;

extern PGDLLEXPORT bool la_catalog_lookup(LaCatalog *cat, LOCKMODE lockmode);
extern PGDLLEXPORT bool la_worker_can_run_as(Oid roleid);

/* Running the extension's fixed SQL as the bootstrap superuser (privilege.c). */
typedef struct LaPrivileged
{
	Oid			caller;			/* CURRENT_USER before the switch */
	int			saved_sec_context;
	int			nestlevel;
	bool		installed;		/* the extension exists in this database */
	LaCatalog	cat;
} LaPrivileged;

extern PGDLLEXPORT void la_privileged_begin(LaPrivileged *p, LOCKMODE lockmode);
extern PGDLLEXPORT void la_privileged_end(LaPrivileged *p);

/* Status changes of lantern.tasks (queue.c). */
typedef struct LaSettle
{
	bool		all_jobs;		/* any task, rather than the one jobid names */
	int64		jobid;
	Oid			roleid;			/* InvalidOid: any role */
	bool		unowned;		/* only tasks with no owner (not from async_task) */
	bool		skip_locked;	/* leave rows others hold locked for a later round */
	bool		latest_snapshot;	/* see rows committed since the caller's snapshot */
	const char *from_status;
	const char *to_status;
	const char *message;		/* error_message, NULL for none */
	const char *sqlstate;		/* recorded in task_errors, NULL for none */
	const int64 *only;			/* only these jobids (nonly of them); NULL: any */
	int			nonly;
	const int64 *except;		/* never these jobids (nexcept of them); NULL: none */
	int			nexcept;
} LaSettle;

extern PGDLLEXPORT int64 la_queue_settle(const LaCatalog *cat, const LaSettle *s);

/* A statement's saved plan, for one lantern.tasks and one text (queue.c). */
typedef struct LaSavedPlan
{
	Oid			relid;
	char	   *sql;			/* the text it was prepared from */
	struct _SPI_plan *plan;
} LaSavedPlan;

extern PGDLLEXPORT struct _SPI_plan *la_queue_plan(LaSavedPlan *saved, Oid relid, const char *sql,
												   int nargs, Oid *types);
extern PGDLLEXPORT int la_queue_running(const LaCatalog *cat, int64 **jobids);

/*
 * A task's own time limit, lantern.task_owners.timeout (queue.c): the
 * column exists from 0.3.0 on; an interval's length in microseconds.
 */
extern PGDLLEXPORT bool la_queue_has_timeout(const LaCatalog *cat);
/* lantern.task_owners.datid, the database a task was submitted in: from 0.4.0 on (queue.c) */
extern PGDLLEXPORT bool la_queue_has_datid(const LaCatalog *cat);
extern PGDLLEXPORT int64 la_interval_usecs(const Interval *span);

/* Worker registration, shared by the launcher and the processes it starts (loader.c). */
extern PGDLLEXPORT void la_worker_describe(BackgroundWorker *worker, const char *function,
										   const char *type, const char *name,
										   int restart_time);

/* Shared memory (shmem.c, slots.c, slot_cancel.c) */
extern PGDLLEXPORT int la_slot_count(void);
extern PGDLLEXPORT void la_slot_view(int index, LaSlotView *view);
extern PGDLLEXPORT int la_slot_reserve(LaSlotKind kind, Oid dboid, Oid roleid, bool start_sweep);
extern PGDLLEXPORT void la_slot_release(int index);
extern PGDLLEXPORT uint32 la_slot_generation(int index);
extern PGDLLEXPORT bool la_slot_reclaim(int index, LaSlotView *view);
extern PGDLLEXPORT void la_slot_reap(int index, LaSlotView *view);
extern void la_slot_attach(int index);
extern PGDLLEXPORT bool la_slot_set_job(int index, int64 jobid, Oid tasks_relid, bool finished_one,
										 LaSlotJob *prior);
extern PGDLLEXPORT void la_slot_unset_job(int index, int64 jobid, const LaSlotJob *prior);
extern PGDLLEXPORT void la_slot_task_done(int index);
extern PGDLLEXPORT bool la_slot_begin_finishing(int index, int64 jobid);
extern PGDLLEXPORT void la_slot_park(int index, const char *status, const char *sqlstate,
									 const char *message);
extern void la_slot_park_fatal(int index, const char *sqlstate, const char *message);
extern bool la_slot_names_job(int index);
extern void la_slot_mark_clean(int index);
extern PGDLLEXPORT void la_slot_wake(int index);
extern PGDLLEXPORT void la_slot_retire(int index);
extern PGDLLEXPORT bool la_slot_retiring(int index);
extern bool la_slot_cancel_job(int64 jobid, Oid tasks_relid);
extern void la_slot_cancel_role(Oid roleid, Oid tasks_relid);
extern PGDLLEXPORT bool la_slot_cancel_requested(int index, int64 jobid);
extern bool la_slot_cancel_is_current(int index);
extern void la_slot_target(int index, LaSlotKind *kind, Oid *dboid, Oid *roleid);
extern PGDLLEXPORT bool la_slot_start_sweep(int index);
extern int	la_slot_wake_idle(Oid dboid, Oid roleid);
extern void la_slot_evict_database(Oid dboid);
extern int	la_slot_count_idle_in_database(Oid dboid);
extern PGDLLEXPORT int la_slot_live_jobs(Oid dboid, int64 *jobids, int max);
extern void la_launcher_attach(void);
extern PGDLLEXPORT void la_launcher_wake(void);
extern PGDLLEXPORT bool la_reconcile_needed(void);
extern PGDLLEXPORT void la_reconcile_done(void);

/* Tasks whose worker ended while running them (lost.c) */
extern PGDLLEXPORT void la_lost_add(Oid dboid, Oid tasks_relid, int64 jobid, bool canceled);
extern PGDLLEXPORT int la_lost_list(Oid dboid, LaLostView *views, int max);
extern PGDLLEXPORT int la_lost_jobids(Oid dboid, int64 *jobids, int max);
extern PGDLLEXPORT void la_lost_remove(Oid dboid, int64 jobid, Oid tasks_relid);
extern PGDLLEXPORT void la_lost_forget_database(Oid dboid);

/* The demand board (demand.c) */
extern PGDLLEXPORT void la_demand_note(Oid dboid, Oid roleid, int64 ntasks);
extern PGDLLEXPORT void la_demand_note_pending(Oid dboid, Oid roleid, int64 pending);
extern PGDLLEXPORT void la_demand_looking(Oid dboid, Oid roleid);
extern PGDLLEXPORT void la_demand_claimed(Oid dboid, Oid roleid);
extern PGDLLEXPORT bool la_demand_settled(Oid dboid, Oid roleid);
extern PGDLLEXPORT void la_demand_forget(Oid dboid, Oid roleid);
extern PGDLLEXPORT void la_demand_forget_database(Oid dboid);
extern PGDLLEXPORT int la_demand_read(LaDemandView *views, int max);
extern PGDLLEXPORT bool la_demand_take_overflow(void);
extern PGDLLEXPORT int la_demand_capacity(void);

/* Databases a DROP/ALTER/CREATE DATABASE waits to have to itself (dbguard.c) */
extern PGDLLEXPORT bool la_database_blocked(Oid dboid);

#endif							/* LA_SHARED_H */
