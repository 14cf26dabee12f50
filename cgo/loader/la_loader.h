/*
 * la_loader.h - functions private to the preloaded loader library
 */
#ifndef LA_LOADER_H
#define LA_LOADER_H

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "nodes/nodes.h"

#include "la_shared.h"

extern void la_guc_define(void);
extern void la_shmem_install_hooks(void);
extern void la_dbguard_install_hook(void);

/*
 * sqlguard.c: a statement whose text holds LA_SQLGUARD_MARK, an OID and the
 * end of the comment (catalog.c writes one before each table name) may use
 * only the relations so marked and pg_catalog's objects.
 */
#define LA_SQLGUARD_MARK "/*lantern_async relation "
extern void la_sqlguard_install_hook(void);

/* The schema the extension's scripts name; an update runs only there (sqlguard.c). */
#define LA_SCHEMA_NAME "lantern"
extern void la_sqlguard_check_utility(Node *stmt);
extern Oid	la_catalog_schema(void);
extern void la_fatal_install_hook(int slot);
extern int	la_golib_run(const char *entry, int arg);

/* queue.c */
extern int	la_queue_execute(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, bool latest);
extern int64 la_queue_insert(const LaCatalog *cat, const char *query, const char *job_name,
							 const char *username, Oid roleid, const Interval *timeout);

typedef struct LaTaskState
{
	bool		found;
	char	   *status;			/* NULL when the column is NULL */
	Oid			owner;			/* InvalidOid: not submitted through async_task */
} LaTaskState;

extern LaTaskState la_queue_read_task(const LaCatalog *cat, int64 jobid);

/* history.c */
extern void la_history_note(Oid dboid, TimestampTz finished);

/* wait.c */
extern Size la_wait_shmem_size(void);
extern void la_wait_shmem_init(void);
extern void la_wait_note_finished(int64 jobid);
extern void la_wait_wake_database(void);

/* wait_caller.c */
extern void la_wait_require_nonatomic(FunctionCallInfo fcinfo);
extern void la_wait_require_nothing_to_commit(void);

/* slots.c: the tasks running in a database, for lantern.running_tasks() */
typedef struct LaRunning
{
	int64		jobid;
	int			pid;
	Oid			roleid;
	TimestampTz started;
} LaRunning;

extern int	la_slot_running(Oid dboid, Oid tasks_relid, LaRunning *out, int max);

/* privilege.c: for the SQL functions, which need the extension installed */
extern void la_privileged_require(LaPrivileged *p);

#endif							/* LA_LOADER_H */
