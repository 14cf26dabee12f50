/*
 * la_copies.c - a scout ends the tasks whose rows a copied database
 * inherited
 *
 * CREATE DATABASE ... TEMPLATE copies lantern.tasks with everything in it,
 * the unfinished tasks of every role included.  From 0.4.0 on each task
 * records the database it was submitted in (lantern.task_owners.datid,
 * written only by async_task), the claims take only this database's tasks
 * (la_bookkeeping.c), and a scout fails the copies here: a task runs only
 * in the database it was submitted in, once.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "la_call.h"
#include "tables/la_tables.h"

typedef struct LaCopiesList
{
	LaCopiedRow **rows;
	int		   *nrows;
} LaCopiesList;

/* One row per other database that unfinished tasks here were submitted in. */
static void
la_copies_list_body(LaPrivileged *p, void *arg)
{
	LaCopiesList *c = arg;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(MyDatabaseId)};
	int			rc;

	if (!la_queue_has_datid(&p->cat))
		return;					/* before 0.4.0 a copy cannot be told apart */
	rc = SPI_execute_with_args(psprintf("SELECT o.datid, d.datname::text, count(*) "
										"FROM %s t JOIN %s o ON o.jobid = t.jobid "
										"LEFT JOIN pg_catalog.pg_database d ON d.oid = o.datid "
										"WHERE t.status IN ('pending', 'running') AND o.datid <> $1 "
										"GROUP BY o.datid, d.datname ORDER BY 1",
										p->cat.tasks_name, p->cat.task_owners_name),
							   1, types, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "lantern_async could not read the tasks of other databases: %s",
			 SPI_result_code_string(rc));
	*c->nrows = (int) SPI_processed;
	*c->rows = MemoryContextAllocZero(la_result_context(), sizeof(LaCopiedRow) * Max(*c->nrows, 1));
	for (int i = 0; i < *c->nrows; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		LaCopiedRow *r = &(*c->rows)[i];
		bool		isnull;
		Datum		name;

		r->datid = DatumGetObjectId(SPI_getbinval(row, desc, 1, &isnull));
		name = SPI_getbinval(row, desc, 2, &isnull);
		r->datname = isnull ? NULL : MemoryContextStrdup(la_result_context(), TextDatumGetCString(name));
		r->unfinished = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
	}
}

bool
la_copies_list(LaCopiedRow **rows, int *nrows, LaError *err)
{
	LaCopiesList c = {rows, nrows};

	*rows = NULL;
	*nrows = 0;
	return la_bk_run(la_copies_list_body, &c, err);
}

typedef struct LaCopiesFail
{
	uint32_t	datid;
	const LaSettle *settle;
	int64_t    *count;
} LaCopiesFail;

/*
 * Settle the tasks in settle->from_status that were submitted in database
 * datid, skipping rows a user holds locked (a later sweep takes them).
 * None of them runs here: the claims take only this database's tasks.
 */
static void
la_copies_fail_body(LaPrivileged *p, void *arg)
{
	LaCopiesFail *c = arg;
	LaSettle	s = *c->settle;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(c->datid), CStringGetTextDatum(s.from_status)};
	int64	   *jobids;
	int			rc;

	if (!la_queue_has_datid(&p->cat) || c->datid == MyDatabaseId)
		return;
	rc = SPI_execute_with_args(psprintf("SELECT t.jobid FROM %s t JOIN %s o ON o.jobid = t.jobid "
										"WHERE o.datid = $1 AND t.status = $2",
										p->cat.tasks_name, p->cat.task_owners_name),
							   2, types, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "lantern_async could not read the tasks of another database: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return;
	jobids = palloc(sizeof(int64) * SPI_processed);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		jobids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	s.only = jobids;
	s.nonly = (int) SPI_processed;
	s.all_jobs = true;
	s.skip_locked = true;
	*c->count = la_queue_settle(&p->cat, &s);
	if (*c->count > 0)
		ForceSyncCommit();
}

bool
la_copies_fail(uint32_t datid, const LaSettle *settle, int64_t *count, LaError *err)
{
	LaCopiesFail c = {datid, settle, count};

	*count = 0;
	return la_bk_run(la_copies_fail_body, &c, err);
}
