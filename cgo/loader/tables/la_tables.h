/*
 * la_tables.h - the tables/ layer: the extension's own tables, found
 * through pg_depend (catalog.c), used as the bootstrap superuser
 * (privilege.c), and changed by the statements of queue.c
 *
 * Everything here runs inside a transaction of the calling backend or
 * worker; it may raise an ERROR.  It calls down into state/ only (a final
 * status wakes the waiters through la_wait_note_finished), never up.
 */
#ifndef LA_TABLES_H
#define LA_TABLES_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/lockdefs.h"

#include "base/la_base.h"

/*
 * catalog.c writes this comment, the table's OID and the end of the comment
 * before each table name it builds; sqlguard.c (hooks/) lets a statement
 * whose text holds one use only the relations so marked and pg_catalog's
 * objects.
 */
#define LA_SQLGUARD_MARK "/*lantern_async relation "

/* The extension's own objects, found through pg_depend (catalog.c). */
typedef struct LaCatalog
{
	Oid			extension;
	Oid			tasks;			/* lantern.tasks */
	Oid			task_errors;
	Oid			task_owners;
	Oid			task_attempts;	/* from 0.5.0 on; InvalidOid before */
	Oid			task_dependencies;	/* from 0.5.0 on; InvalidOid before */
	/* Quoted, schema-qualified names built from the OIDs, for SQL text. */
	char	   *tasks_name;
	char	   *task_errors_name;
	char	   *task_owners_name;
	char	   *task_attempts_name; /* NULL before 0.5.0 */
	char	   *task_dependencies_name; /* NULL before 0.5.0 */
} LaCatalog;

extern PGDLLEXPORT bool la_catalog_lookup(LaCatalog *cat, LOCKMODE lockmode);
extern Oid	la_catalog_schema(void);
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
/* For the SQL functions, which need the extension installed */
extern void la_privileged_require(LaPrivileged *p);

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
	/* From 0.5.0 on, the end of one attempt of a running task (attempts.c): */
	int32		attempt;		/* > 0: recorded in task_attempts as this attempt */
	TimestampTz attempt_started;
	TimestampTz attempt_ended;	/* 0: now */
	TimestampTz due;			/* to_status pending, a retry: when the next attempt may start */
	const int64 *only;			/* only these jobids (nonly of them); NULL: any */
	int			nonly;
	const int64 *except;		/* never these jobids (nexcept of them); NULL: none */
	int			nexcept;
	int64		batch;			/* > 0: at most this many tasks (the caller repeats); 0: all */
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
/* The same, always with the generic plan: for the claim's statements */
extern PGDLLEXPORT struct _SPI_plan *la_queue_plan_generic(LaSavedPlan *saved, Oid relid,
														   const char *sql, int nargs, Oid *types);
/* The same, planned for each run's parameters: for statements they switch filters of */
extern struct _SPI_plan *la_queue_plan_custom(LaSavedPlan *saved, Oid relid, const char *sql,
											  int nargs, Oid *types);
extern PGDLLEXPORT int la_queue_running(const LaCatalog *cat, int64 **jobids);
extern int	la_queue_execute(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, bool latest);
/* A task about to be queued (enqueue.c). */
typedef struct LaNewTask
{
	const char *query;
	const char *job_name;		/* NULL: none */
	const char *username;		/* the submitting role's name at submit */
	Oid			roleid;			/* the submitting role */
	const Interval *timeout;	/* its own time limit; NULL: lantern_async.task_timeout */
	TimestampTz due;			/* the earliest it may start; 0: at once */
	int32		retries;		/* attempts that may follow a transient failure */
	bool		depends;		/* it has dependencies (task_dependencies) */
} LaNewTask;

extern int64 la_queue_insert(const LaCatalog *cat, const LaNewTask *task);

/* A task's dependencies, from 0.5.0 on (dependencies.c); jobids sorted, distinct. */
extern void la_dependencies_check_visible(const LaCatalog *cat, const int64 *jobids, int n);
extern void la_dependencies_record(const LaCatalog *cat, int64 jobid, const int64 *jobids, int n);
extern void la_dependencies_requeue(const LaCatalog *cat, Datum jobids);
extern Datum la_queue_text(const char *value, char *null);
/* A bigint[] of jobids; NULL (no filter) when jobids is NULL. */
extern Datum la_queue_jobid_array(const int64 *jobids, int n, char *null);
extern int	la_queue_run(struct _SPI_plan *plan, Datum *values, const char *nulls, bool latest);

/* Attempts and retries (attempts.c). */
extern bool la_queue_records_attempt(const LaCatalog *cat, const LaSettle *s);
extern const char *la_queue_attempt_sql(const LaCatalog *cat, const LaSettle *s);
extern void la_queue_attempt_args(const LaSettle *s, Datum *values, char *nulls);
extern bool la_queue_is_retry(const LaSettle *s);
extern int64 la_queue_retry(const LaCatalog *cat, const LaSettle *s);

typedef struct LaTaskState
{
	bool		found;
	char	   *status;			/* NULL when the column is NULL */
	Oid			owner;			/* InvalidOid: not submitted through async_task */
} LaTaskState;

extern LaTaskState la_queue_read_task(const LaCatalog *cat, int64 jobid);

/*
 * A task's own time limit, lantern.task_owners.timeout (columns.c): the
 * column exists from 0.3.0 on; an interval's length in microseconds.
 */
extern PGDLLEXPORT bool la_queue_has_timeout(const LaCatalog *cat);
/* lantern.task_owners.datid, the database a task was submitted in: from 0.4.0 on (columns.c) */
extern PGDLLEXPORT bool la_queue_has_datid(const LaCatalog *cat);
/* lantern.task_owners.due, the claims' queue: from 0.5.0 on (columns.c) */
extern PGDLLEXPORT bool la_queue_has_due(const LaCatalog *cat);

/* Which of those a database's tables have: the shape of its statements. */
typedef struct LaOwnerColumns
{
	bool		timeout;
	bool		datid;
	bool		due;
} LaOwnerColumns;

extern PGDLLEXPORT LaOwnerColumns la_queue_columns(const LaCatalog *cat);
extern PGDLLEXPORT int64 la_interval_usecs(const Interval *span);

#endif							/* LA_TABLES_H */
