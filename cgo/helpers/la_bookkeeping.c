/*
 * la_bookkeeping.c - the queue in lantern.tasks, through SPI
 *
 * Every helper is one short transaction of fixed SQL, run through
 * la_privileged_begin/end (the bootstrap superuser, pinned settings)
 * whatever session it runs in: a task's role may be read-only by default,
 * have a lock_timeout, or own objects in its search_path, and none of that
 * may break or hijack the bookkeeping.  The tables are the extension's own,
 * found through pg_depend (loader/tables/catalog.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "la_call.h"
#include "base/la_compat.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

/* Set by a body whose transaction must roll back rather than commit (la_claim.c). */
bool		la_bk_rollback = false;

/*
 * Cancel interrupts are held throughout: a cancel aimed at a task must
 * never break a claim or a result.
 */
static void
la_bk_open(LaPrivileged *p)
{
	HOLD_CANCEL_INTERRUPTS();
	la_own_transaction_start();
	XactIsoLevel = XACT_READ_COMMITTED;
	XactReadOnly = false;
	PushActiveSnapshot(GetTransactionSnapshot());
	la_privileged_begin(p, RowExclusiveLock);
}

static void
la_bk_close(LaPrivileged *p)
{
	la_privileged_end(p);
	PopActiveSnapshot();
	if (la_bk_rollback)
		AbortCurrentTransaction();
	else
		CommitTransactionCommand();
	MemoryContextSwitchTo(la_task_context());
	RESUME_CANCEL_INTERRUPTS();
}

/*
 * Run body in a bookkeeping transaction; body is skipped when the extension
 * is not installed.  On an error, undo (NULL: none) runs first, while the
 * transaction still holds its locks.  The queue's table found locked
 * (55P03, loader/tables/catalog.c: our processes never wait for it) is not
 * logged here: it is expected while a user's lock request waits, the
 * caller tries again later, and the worker says once that it gave up
 * (bgworker.Worker.record).
 */
bool
la_bk_run_undoable(la_bk_body body, la_bk_undo undo, void *arg, LaError *err)
{
	LaPrivileged p;
	LaSaved		saved;
	volatile bool ok = true;

	if (!la_call_begin(err))
		return false;
	la_reset_task_context();
	la_save(&saved);
	la_bk_rollback = false;
	PG_TRY();
	{
		la_bk_open(&p);
		if (p.installed)
			body(&p, arg);
		la_bk_close(&p);
	}
	PG_CATCH();
	{
		if (undo != NULL)
			undo(arg);
		la_call_fail_logged(err, &saved, geterrcode() != ERRCODE_LOCK_NOT_AVAILABLE);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

bool
la_bk_run(la_bk_body body, void *arg, LaError *err)
{
	return la_bk_run_undoable(body, NULL, arg, err);
}

/*
 * The next statement walks an index in its order instead of sorting what
 * it reads, whatever the statistics say (a sort penalized, not forbidden),
 * and joins row by row, stopping at the first it takes (a hash or merge
 * join would read every row the role ever submitted first).  Never JIT
 * compiled either: a few index probes cost microseconds, compiling them
 * tens of milliseconds, whatever a plan's estimate says.  Pinned where
 * its saved plan is (re)planned and run, until la_privileged_end.
 */
void
la_bk_pin_ordered_walk(void)
{
	static const char *const off[] = {"enable_sort", "enable_hashjoin", "enable_mergejoin", "jit"};

	for (int i = 0; i < lengthof(off); i++)
		(void) set_config_option(off[i], "off", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

static void
la_bk_ready_body(LaPrivileged *p, void *arg)
{
	*(bool *) arg = true;
}

bool
la_bk_ready(bool *ready, LaError *err)
{
	*ready = false;
	return la_bk_run(la_bk_ready_body, ready, err);
}

typedef struct LaSettleCall
{
	const LaSettle *settle;
	uint32_t	tasks_relid;
	int64_t    *count;
} LaSettleCall;

/*
 * A tasks_relid other than 0 must still be the current lantern.tasks: after
 * DROP and CREATE EXTENSION, a jobid of the old table may name a new task.
 */
static void
la_bk_settle_body(LaPrivileged *p, void *arg)
{
	LaSettleCall *c = arg;

	if (c->tasks_relid == 0 || c->tasks_relid == p->cat.tasks)
		*c->count = la_queue_settle(&p->cat, c->settle);
	/* An outcome, too, must not be lost to a crash after it was reported. */
	if (*c->count > 0)
		ForceSyncCommit();
}

bool
la_bk_settle(const LaSettle *settle, uint32_t tasks_relid, int64_t *count, LaError *err)
{
	LaSettleCall c = {settle, tasks_relid, count};

	*count = 0;
	return la_bk_run(la_bk_settle_body, &c, err);
}

typedef struct LaQueues
{
	LaQueueRow **rows;
	int		   *nrows;
} LaQueues;

static void
la_bk_queue_row(HeapTuple row, TupleDesc desc, LaQueueRow *q)
{
	bool		isnull;
	Datum		due;

	q->roleid = DatumGetObjectId(SPI_getbinval(row, desc, 1, &isnull));
	q->oldest_jobid = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
	q->pending = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
	q->role_exists = DatumGetBool(SPI_getbinval(row, desc, 4, &isnull));
	q->canlogin = DatumGetBool(SPI_getbinval(row, desc, 5, &isnull));
	q->username = MemoryContextStrdup(la_result_context(),
									  TextDatumGetCString(SPI_getbinval(row, desc, 6, &isnull)));
	due = SPI_getbinval(row, desc, 7, &isnull);
	q->next_due = isnull ? 0 : DatumGetTimestampTz(due);
}

/*
 * One row per role (by OID) with pending tasks, oldest first; roleid 0 for
 * rows with no owner.  From 0.5.0 on, also when the earliest of them may
 * start (the board serves it then), and none that waits for dependencies.
 */
static void
la_bk_queues_body(LaPrivileged *p, void *arg)
{
	LaQueues   *c = arg;
	/*
	 * Tasks waiting for their dependencies are left out: no worker could
	 * take them, and the end of a dependency queues them again and notes
	 * them itself (loader/tables/dependencies.c).
	 */
	const char *waiting = "AND NOT coalesce(o.due IS NULL AND o.depends, false) ";
	int			rc;

	rc = SPI_execute(psprintf("SELECT coalesce(o.roleid, 0), min(t.jobid), count(*), "
							  "       r.oid IS NOT NULL, coalesce(" LA_ROLE_LOGIN_SQL ", false), min(t.username), "
							  "       %s "
							  "FROM %s t LEFT JOIN %s o ON o.jobid = t.jobid "
							  "LEFT JOIN pg_catalog.pg_authid r ON r.oid = o.roleid "
							  "WHERE t.status = 'pending' %s"
							  "GROUP BY o.roleid, r.oid, r.rolcanlogin ORDER BY 2",
							  la_queue_has_due(&p->cat) ? "min(o.due)" : "NULL::pg_catalog.timestamptz",
							  p->cat.tasks_name, p->cat.task_owners_name,
							  la_queue_has_due(&p->cat) ? waiting : ""),
					 false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "lantern_async could not read the queue: %s", SPI_result_code_string(rc));
	*c->nrows = (int) SPI_processed;
	*c->rows = MemoryContextAllocZero(la_result_context(), sizeof(LaQueueRow) * Max(*c->nrows, 1));
	for (int i = 0; i < *c->nrows; i++)
		la_bk_queue_row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, &(*c->rows)[i]);
}

bool
la_bk_queues(LaQueueRow **rows, int *nrows, LaError *err)
{
	LaQueues	c = {rows, nrows};

	*rows = NULL;
	*nrows = 0;
	return la_bk_run(la_bk_queues_body, &c, err);
}

typedef struct LaOrphans
{
	const LaSettle *settle;
	int64_t    *count;
} LaOrphans;

/*
 * Fail the tasks 'running' that no live slot of this database runs.  The
 * candidates are read first and the slots after: a task running in that
 * first snapshot had its claim committed before it, and a claim names its
 * task in the slot before it commits, so a live task is always in the
 * slots read afterwards.  (Reading the slots first could miss a claim that
 * committed in between.)
 */
static void
la_bk_fail_orphans_body(LaPrivileged *p, void *arg)
{
	LaOrphans  *c = arg;
	LaSettle	s = *c->settle;
	int			nslots = la_slot_count();
	int64	   *live = palloc(sizeof(int64) * (nslots + LA_LOST_MAX_VIEWS));

	s.nonly = la_queue_running(&p->cat, (int64 **) &s.only);
	if (s.nonly == 0)
		return;
	s.except = live;
	s.nexcept = la_slot_live_jobs(MyDatabaseId, live, nslots);
	/* Tasks in the lost list have an outcome of their own to get. */
	s.nexcept += la_lost_jobids(MyDatabaseId, live + s.nexcept, LA_LOST_MAX_VIEWS);
	s.all_jobs = true;
	s.skip_locked = true;
	s.latest_snapshot = true;
	s.from_status = "running";
	*c->count = la_queue_settle(&p->cat, &s);
	if (*c->count > 0)
		ForceSyncCommit();
}

bool
la_bk_fail_orphans(const LaSettle *settle, int64_t *count, LaError *err)
{
	LaOrphans	c = {settle, count};

	*count = 0;
	return la_bk_run(la_bk_fail_orphans_body, &c, err);
}

/* The database this process is connected to. */
uint32_t
la_bk_database(void)
{
	return (uint32_t) MyDatabaseId;
}
