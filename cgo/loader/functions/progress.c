/*
 * progress.c - lantern.running_tasks(), under the lantern.task_progress view
 *
 * Which process runs which task comes from the workers' slots in shared
 * memory, never from application_name: a task, or any session, can set
 * that to anything.  A caller sees the tasks it would see in lantern.tasks
 * (its own; a superuser or BYPASSRLS role: all), so the pid of another
 * role's task is not given away.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "tables/la_tables.h"
#include "state/la_state.h"

PG_FUNCTION_INFO_V1(lantern_async_running_tasks);

static bool
la_progress_can_see(Oid caller, Oid owner)
{
	return superuser_arg(caller) || has_bypassrls_privilege(caller) || owner == caller;
}

Datum
lantern_async_running_tasks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			caller = GetUserId();
	LaCatalog	cat;
	LaRunning  *running;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (!la_catalog_lookup(&cat, AccessShareLock))
		PG_RETURN_VOID();
	running = palloc(sizeof(LaRunning) * la_max_workers);
	n = la_slot_running(MyDatabaseId, cat.tasks, running, la_max_workers);
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (!la_progress_can_see(caller, running[i].roleid))
			continue;
		values[0] = Int64GetDatum(running[i].jobid);
		values[1] = Int32GetDatum(running[i].pid);
		values[2] = TimestampTzGetDatum(running[i].started);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
