/*
 * la_call.h - the contract of every C helper that Go calls
 *
 * Each helper runs its PostgreSQL calls inside PG_TRY; an ERROR is copied
 * into an LaError, the error state flushed and any transaction aborted, and
 * the helper returns false.  No ERROR ever unwinds through Go frames.
 * Helpers may only be called from the thread that entered Go from C.
 */
#ifndef LA_CALL_H
#define LA_CALL_H

#include "postgres.h"

#include <stdbool.h>
#include <stdint.h>

#include "tables/la_tables.h"
#include "state/la_state.h"

typedef struct LaError
{
	int			elevel;
	char		sqlstate[6];
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *context;
	char	   *internalquery;
	int			cursorpos;
	int			internalpos;
} LaError;

/*
 * What a PG_CATCH must put back: errfinish() zeroes the interrupt holdoff
 * counts before it longjmps, and leaves CurrentMemoryContext wherever the
 * error was raised.
 */
typedef struct LaSaved
{
	int			holdoff;
	int			cancel_holdoff;
	MemoryContext context;
} LaSaved;

/* la_call.c */
extern bool la_call_init(void);
extern bool la_call_begin(LaError *err);
extern void la_save(LaSaved *saved);
extern void la_restore(const LaSaved *saved);
extern void la_call_fail(LaError *err, const LaSaved *saved);
extern void la_call_fail_logged(LaError *err, const LaSaved *saved, bool logged);
extern MemoryContext la_result_context(void);
extern MemoryContext la_task_context(void);
extern void la_reset_task_context(void);
extern void la_own_transaction_start(void);

/* la_log.c */
extern void la_log(int level, const char *message);
extern bool la_log_enabled(int level);

/* la_wait.c */
extern int	la_wait(long timeout_ms);

/* la_exec.c (with la_exec_limit.c, la_exec_finish.c) */
typedef struct LaTaskRun
{
	int			slot;
	int64_t		jobid;
	uint32_t	tasks_relid;
	const char *query;
	int64_t		limit_us;		/* how long it may run, 0: no limit */
	bool		limit_per_task; /* the limit is its own timeout, not lantern_async.task_timeout */
	int32_t		attempt;		/* > 0: its success goes in task_attempts as this attempt */
	int64_t		attempt_started;	/* TimestampTz: when this attempt started */
	/* Out: */
	bool		recorded;		/* its success was committed with its work */
	bool		committed;		/* a transaction of it committed work: it must not run again */
} LaTaskRun;

extern bool la_exec_task(LaTaskRun *run, LaError *err);

/* la_reset.c */
extern bool la_reset_session(LaError *err);

/* la_settings.c */
extern bool la_settings_remember(bool *current, LaError *err);
extern bool la_settings_current(void);
extern bool la_settings_stale(void);

/* la_bookkeeping.c */
typedef struct LaQueueRow
{
	char	   *username;		/* the name at submit time */
	int64_t		oldest_jobid;
	int64_t		pending;
	int64_t		next_due;		/* TimestampTz: when the earliest of them may start; 0: now */
	uint32_t	roleid;			/* 0: tasks not submitted through async_task */
	bool		role_exists;
	bool		canlogin;
} LaQueueRow;

/* A bookkeeping transaction (la_bookkeeping.c): body runs as the bootstrap superuser. */
typedef void (*la_bk_body) (LaPrivileged *p, void *arg);
typedef void (*la_bk_undo) (void *arg);
extern bool la_bk_run(la_bk_body body, void *arg, LaError *err);
extern bool la_bk_run_undoable(la_bk_body body, la_bk_undo undo, void *arg, LaError *err);
extern void la_bk_pin_ordered_walk(void);
/* A body sets it when its transaction must roll back rather than commit. */
extern bool la_bk_rollback;

extern bool la_bk_ready(bool *ready, LaError *err);
extern bool la_bk_settle(const LaSettle *settle, uint32_t tasks_relid, int64_t *count,
						 LaError *err);
extern bool la_bk_queues(LaQueueRow **rows, int *nrows, LaError *err);
extern bool la_bk_fail_orphans(const LaSettle *settle, int64_t *count, LaError *err);
extern uint32_t la_bk_database(void);

/* la_claim_due.c: the claim's statement and the next due time, from 0.5.0 on */
extern char *la_bk_claim_due_sql(const LaCatalog *cat);
extern TimestampTz la_bk_next_due(const LaCatalog *cat, TimestampTz now);
extern char *la_bk_claim_ready_sql(const LaCatalog *cat);

/* la_claim_deps.c: a picked task that has dependencies */
extern bool la_bk_claim_deps(const LaCatalog *cat, int64 jobid, TimestampTz now);

/* la_claim.c */
/* The task a claim took (la_claim.c). */
typedef struct LaClaimed
{
	int64_t		jobid;			/* 0: none */
	char	   *query;
	int64_t		timeout_us;		/* the task's own timeout, 0: none */
	uint32_t	tasks_relid;
	int32_t		attempt;		/* this attempt's number, from 1 */
	int32_t		retries;		/* how many attempts may follow the first */
} LaClaimed;

extern bool la_bk_claim(int slot, const LaSettle *finished, uint32_t finished_relid,
						LaClaimed *out, LaError *err);

/* la_copies.c: unfinished tasks a copied database inherited */
typedef struct LaCopiedRow
{
	char	   *datname;		/* NULL: that database no longer exists */
	int64_t		unfinished;		/* its tasks here still pending or running */
	uint32_t	datid;			/* the database they were submitted in */
} LaCopiedRow;

extern bool la_copies_list(LaCopiedRow **rows, int *nrows, LaError *err);
extern bool la_copies_fail(uint32_t datid, const LaSettle *settle, int64_t *count, LaError *err);

/* la_history.c */
#define LA_HISTORY_BATCH 500
extern bool la_history_expire_batch(int64_t *deleted, LaError *err);
extern bool la_history_note_oldest(LaError *err);

/* la_launch.c */
extern int	la_launch(uint32_t dboid, uint32_t roleid, bool start_sweep, LaError *err);

/* la_launcher.c */
typedef enum LaVerdict
{
	LA_RUNNABLE = 0,
	LA_DATABASE_GONE,
	LA_DATABASE_BLOCKED,
	LA_ROLE_UNRUNNABLE
} LaVerdict;

extern bool la_launcher_databases(uint32_t **oids, int *n, LaError *err);
extern bool la_launcher_check(const LaDemandView *demands, int n, int *verdicts, LaError *err);
extern int	la_read_slots(LaSlotView *views, int max);
extern int	la_reap_workers(LaSlotView *ended, int max, LaError *err);

#endif							/* LA_CALL_H */
