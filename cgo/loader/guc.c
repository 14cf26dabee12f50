/*
 * guc.c - the lantern_async.* configuration parameters
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "la_loader.h"
#include "la_shared.h"

char	   *la_database = NULL;
int			la_max_workers = 4;

void
la_guc_define(void)
{
	DefineCustomStringVariable("lantern_async.database",
							   "Database whose lantern.tasks queue the background workers serve.",
							   NULL,
							   &la_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("lantern_async.max_workers",
							"Maximum number of tasks that run at the same time.",
							"Each running task uses one background worker process; "
							"the dispatcher uses one more.",
							&la_max_workers,
							4,
							1, 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("lantern_async");

	/* One bgworker slot stays with the dispatcher itself. */
	if (la_max_workers > max_worker_processes - 1)
	{
		int			clamped = Max(max_worker_processes - 1, 1);

		ereport(LOG,
				(errmsg("lantern_async.max_workers lowered from %d to %d",
						la_max_workers, clamped),
				 errdetail("max_worker_processes is %d and the dispatcher needs one of them.",
						   max_worker_processes),
				 errhint("Raise max_worker_processes to run more tasks at the same time.")));
		la_max_workers = clamped;
	}
}
