/*
 * la_shared.h - state shared between the preloaded C loader and the Go library
 *
 * The loader (lantern_async.so) owns shared memory and the GUCs.  The Go
 * library, dlopen()ed later inside each background worker, reaches them
 * through the functions declared here; they resolve at dlopen time because
 * PostgreSQL loads lantern_async.so with RTLD_GLOBAL.
 */
#ifndef LA_SHARED_H
#define LA_SHARED_H

#include "postgres.h"

#define LA_LIBRARY_NAME "lantern_async"
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
	bool		clean_exit;		/* the worker ran out of tasks and ended normally */
} LaSlotView;

/* GUCs (guc.c) */
extern char *la_database;
extern int	la_max_workers;

/* Shared memory (shmem.c) */
extern int	la_slot_count(void);
extern void la_slot_view(int index, LaSlotView *view);
extern int	la_slot_reserve(Oid dboid, Oid roleid);
extern void la_slot_release(int index);
extern void la_slot_attach(int index);
extern void la_slot_set_job(int index, int64 jobid, Oid tasks_relid);
extern void la_slot_mark_clean(int index);
extern bool la_slot_request_cancel(int64 jobid, Oid tasks_relid);
extern bool la_slot_cancel_requested(int index, int64 jobid);
extern bool la_slot_cancel_is_stale(int index);
extern void la_slot_target(int index, Oid *dboid, Oid *roleid);
extern void la_dispatcher_attach(void);
extern void la_dispatcher_wake(void);
extern bool la_reconcile_needed(void);
extern void la_reconcile_done(void);

#endif							/* LA_SHARED_H */
