/*
 * guc.c - the lantern_async.* configuration parameters
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "replication/logicallauncher.h"
#include "utils/guc.h"

#include "base/la_base.h"

char	   *la_database = NULL;
int			la_max_workers = 4;
int			la_worker_idle_timeout = 1000;
int			la_history_retention = 0;
int			la_task_timeout = 0;

/*
 * Unset, every database is served, and SHOW reports the one the session is
 * in: the install scripts (0.1.0 and 0.2.0 are released and never change)
 * check that current_database() is the one served, so they work in every
 * database.  Outside a transaction there is no database to name.
 */
static const char *
la_database_show(void)
{
	static char name[NAMEDATALEN];
	char	   *current;

	if (la_database != NULL && la_database[0] != '\0')
		return la_database;
	if (!OidIsValid(MyDatabaseId) || !IsTransactionState())
		return "";
	current = get_database_name(MyDatabaseId);
	strlcpy(name, current ? current : "", sizeof(name));
	return name;
}

/*
 * Every process of ours and every parallel worker takes one of the
 * max_worker_processes slots, first come, first served: when parallel
 * queries hold all that the others leave, no task starts until they end.
 * Said at start, where the settings are read, with what would be enough.
 * The logical replication launcher holds a slot for good when logical
 * replication workers are allowed.  (max_parallel_workers is the server's
 * value here; a session may raise its own: see the README, Configuration.)
 */
static void
la_guc_check_worker_slots(void)
{
	int			ours = la_max_workers + 1;
	int			replication = max_logical_replication_workers > 0 ? 1 : 0;
	int			needed = ours + replication + max_parallel_workers;

	if (needed <= max_worker_processes)
		return;
	ereport(WARNING,
			(errmsg("parallel queries can take the background worker processes that lantern_async's tasks need"),
			 errdetail("max_worker_processes is %d; lantern_async uses up to %d (lantern_async.max_workers is %d, "
					   "and its launcher), the logical replication launcher %d, and parallel queries up to %d "
					   "(max_parallel_workers): while parallel workers hold the rest, no task starts.",
					   max_worker_processes, ours, la_max_workers, replication, max_parallel_workers),
			 errhint("Set max_worker_processes to at least %d, or max_parallel_workers to at most %d.",
					 needed, Max(max_worker_processes - ours - replication, 0))));
}

/* Where tasks run, and how many at once: read at server start. */
static void
la_guc_define_capacity(void)
{
	DefineCustomStringVariable("lantern_async.database",
							   "Serve only this database (empty: every database).",
							   "By default tasks run in every database where the extension is created; "
							   "then SHOW reports the current database.",
							   &la_database,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, la_database_show);

	DefineCustomIntVariable("lantern_async.max_workers",
							"Maximum number of tasks that run at the same time.",
							"Cluster-wide, shared by every database: each running task uses one "
							"background worker process; the launcher uses one more.",
							&la_max_workers,
							4,
							1, 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
}

/* How long an idle worker, a finished task and a running task last. */
static void
la_guc_define_durations(void)
{
	DefineCustomIntVariable("lantern_async.worker_idle_timeout",
							"How long a worker that ran out of tasks waits for more of its role before it exits.",
							"A submit's commit wakes a waiting worker at once; 0 makes workers exit as soon as "
							"their role has nothing pending.",
							&la_worker_idle_timeout,
							1000,
							0, 24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("lantern_async.history_retention",
							"How long finished tasks stay in lantern.tasks.",
							"Rows that finished longer ago than this are deleted, a few at a time; "
							"pending and running tasks never are. 0 keeps every row.",
							&la_history_retention,
							0,
							0, PG_INT32_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * Read by a worker when a task starts, in the session it runs the task
	 * in (logged in as the task's role, in its database): so ALTER ROLE /
	 * ALTER DATABASE ... SET and postgresql.conf apply, and the submitter's
	 * own session value does not.  A task's own timeout (the third argument
	 * of lantern.async_task()) takes precedence.
	 */
	DefineCustomIntVariable("lantern_async.task_timeout",
							"Stops a task that runs longer than this.",
							"Counted from when a worker starts the task; 0 turns the limit off. "
							"A task submitted with a timeout of its own uses that instead.",
							&la_task_timeout,
							0,
							0, PG_INT32_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* One bgworker slot stays with the launcher itself. */
static void
la_guc_clamp_max_workers(void)
{
	if (la_max_workers > max_worker_processes - 1)
	{
		int			clamped = Max(max_worker_processes - 1, 1);

		ereport(LOG,
				(errmsg("lantern_async.max_workers lowered from %d to %d",
						la_max_workers, clamped),
				 errdetail("max_worker_processes is %d and the launcher needs one of them.",
						   max_worker_processes),
				 errhint("Raise max_worker_processes to run more tasks at the same time.")));
		la_max_workers = clamped;
	}
}

void
la_guc_define(void)
{
	la_guc_define_capacity();
	la_guc_define_durations();
	MarkGUCPrefixReserved("lantern_async");
	/* Once the value is read, before shared memory is sized from it. */
	la_guc_clamp_max_workers();
	la_guc_check_worker_slots();
}
