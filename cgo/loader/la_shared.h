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

#include "postmaster/bgworker.h"
#include "storage/lockdefs.h"

#define LA_LIBRARY_NAME "lantern_async"
#define LA_EXTENSION_NAME "lantern_async"
#define LA_GO_LIBRARY_FILE "lantern_async_go.so"
#define LA_DISPATCHER_TYPE "lantern_async dispatcher"
#define LA_WORKER_TYPE "lantern_async worker"

/* Lifecycle of a worker slot; only the dispatcher frees or allocates one. */
typedef enum LaSlotState
{
	LA_SLOT_FREE = 0,
	LA_SLOT_LAUNCHING,			/* registered, process not attached yet */
	LA_SLOT_ACTIVE,				/* process attached to the slot */
	LA_SLOT_EXITED				/* process gone; dispatcher has not reaped it */
} LaSlotState;

/* A copy of one slot, taken under the lock. */
typedef struct LaSlotView
{
	int			index;
	LaSlotState state;
	Oid			roleid;
	int			pid;
	int64		jobid;			/* task being run, 0 when none */
	Oid			tasks_relid;	/* the lantern.tasks it was claimed from */
	bool		cancel_requested;	/* lantern.cancel_task() accepted for jobid */
	bool		clean_exit;		/* the worker ran out of tasks and ended normally */
	bool		retiring;		/* asked to give the slot up */
	int64		tasks_run;		/* tasks the worker finished */
} LaSlotView;

/* GUCs (guc.c) */
extern PGDLLEXPORT char *la_database;
extern PGDLLEXPORT int la_max_workers;

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
} LaSettle;

extern PGDLLEXPORT int64 la_queue_settle(const LaCatalog *cat, const LaSettle *s);

/* Worker registration, shared by the dispatcher's and the workers' (loader.c). */
extern PGDLLEXPORT void la_worker_describe(BackgroundWorker *worker, const char *function,
										   const char *type, const char *name,
										   int restart_time);

/* Shared memory (shmem.c, slots.c, slot_cancel.c) */
extern PGDLLEXPORT int la_slot_count(void);
extern PGDLLEXPORT void la_slot_view(int index, LaSlotView *view);
extern PGDLLEXPORT int la_slot_reserve(Oid dboid, Oid roleid);
extern PGDLLEXPORT void la_slot_release(int index);
extern PGDLLEXPORT void la_slot_reap(int index, LaSlotView *view);
extern void la_slot_attach(int index);
extern PGDLLEXPORT void la_slot_set_job(int index, int64 jobid, Oid tasks_relid);
extern PGDLLEXPORT void la_slot_task_done(int index);
extern PGDLLEXPORT bool la_slot_begin_finishing(int index, int64 jobid);
extern void la_slot_mark_clean(int index);
extern PGDLLEXPORT void la_slot_wake(int index);
extern PGDLLEXPORT void la_slot_retire(int index);
extern PGDLLEXPORT bool la_slot_retiring(int index);
extern bool la_slot_cancel_job(int64 jobid, Oid tasks_relid);
extern void la_slot_cancel_role(Oid roleid, Oid tasks_relid);
extern PGDLLEXPORT bool la_slot_cancel_requested(int index, int64 jobid);
extern bool la_slot_cancel_is_current(int index);
extern void la_slot_target(int index, Oid *dboid, Oid *roleid);
extern void la_dispatcher_attach(void);
extern void la_dispatcher_wake(void);
extern PGDLLEXPORT bool la_reconcile_needed(void);
extern PGDLLEXPORT void la_reconcile_done(void);

#endif							/* LA_SHARED_H */
