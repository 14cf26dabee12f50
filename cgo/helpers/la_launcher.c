/*
 * la_launcher.c - what the launcher reads from the shared catalogs
 *
 * The launcher is connected to no database, so it sees only the shared
 * catalogs: pg_database (which databases exist and accept connections)
 * and pg_authid (whether a role still exists and can log in).  That is
 * enough to decide whether a demand can be served before spending a
 * process on it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "la_call.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

/* lantern_async.database, when set, is the one database served. */
static bool
la_launcher_served(Form_pg_database db)
{
	return db->datallowconn &&
		(la_database == NULL || la_database[0] == '\0' || strcmp(NameStr(db->datname), la_database) == 0);
}

/* Every database served that accepts connections (template0 does not). */
static void
la_launcher_scan_databases(uint32_t **oids, int *n)
{
	Relation	rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tuple;
	int			cap = 16;

	*oids = MemoryContextAlloc(la_result_context(), sizeof(uint32_t) * cap);
	*n = 0;
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (!la_launcher_served(db))
			continue;
		if (*n == cap)
		{
			cap *= 2;
			*oids = repalloc(*oids, sizeof(uint32_t) * cap);
		}
		(*oids)[(*n)++] = db->oid;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

typedef void (*la_launcher_body) (void *arg);

/* Run body in a transaction (the shared catalogs only), inside PG_TRY. */
static bool
la_launcher_run(la_launcher_body body, void *arg, LaError *err)
{
	LaSaved		saved;
	volatile bool ok = true;

	if (!la_call_begin(err))
		return false;
	la_reset_task_context();
	la_save(&saved);
	PG_TRY();
	{
		la_own_transaction_start();
		PushActiveSnapshot(GetTransactionSnapshot());
		body(arg);
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(la_task_context());
	}
	PG_CATCH();
	{
		la_call_fail(err, &saved);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

typedef struct LaDatabases
{
	uint32_t  **oids;
	int		   *n;
} LaDatabases;

static void
la_launcher_databases_body(void *arg)
{
	LaDatabases *d = arg;

	la_launcher_scan_databases(d->oids, d->n);
}

bool
la_launcher_databases(uint32_t **oids, int *n, LaError *err)
{
	LaDatabases d = {oids, n};

	return la_launcher_run(la_launcher_databases_body, &d, err);
}

static bool
la_launcher_database_open(Oid dboid)
{
	HeapTuple	tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	bool		open = false;

	if (HeapTupleIsValid(tuple))
	{
		open = la_launcher_served((Form_pg_database) GETSTRUCT(tuple));
		ReleaseSysCache(tuple);
	}
	return open;
}

static int
la_launcher_verdict(Oid dboid, Oid roleid)
{
	/* The block first: once it is over, the catalogs show what its command did. */
	if (la_database_blocked(dboid))
		return LA_DATABASE_BLOCKED;
	if (!la_launcher_database_open(dboid))
		return LA_DATABASE_GONE;
	if (OidIsValid(roleid) && !la_worker_can_run_as(roleid))
		return LA_ROLE_UNRUNNABLE;
	return LA_RUNNABLE;
}

typedef struct LaCheck
{
	const LaDemandView *demands;
	int			n;
	int		   *verdicts;
} LaCheck;

static void
la_launcher_check_body(void *arg)
{
	LaCheck    *c = arg;

	for (int i = 0; i < c->n; i++)
		c->verdicts[i] = la_launcher_verdict(c->demands[i].dboid, c->demands[i].roleid);
}

/*
 * Whether each demand (dboid, roleid; roleid 0: a scout) can be served
 * now: one transaction and one call for the whole round.
 */
bool
la_launcher_check(const LaDemandView *demands, int n, int *verdicts, LaError *err)
{
	LaCheck		c = {demands, n, verdicts};

	return la_launcher_run(la_launcher_check_body, &c, err);
}
