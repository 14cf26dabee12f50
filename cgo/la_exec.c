/*
 * la_exec.c - run a task's query string the way the simple query protocol
 * does (psql -c): one implicit transaction for a multi-statement string,
 * explicit BEGIN/COMMIT allowed, and every statement run top-level, so that
 * CREATE INDEX CONCURRENTLY and VACUUM work.  SPI cannot do this: it runs
 * statements as if inside a function.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "pgstat.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "la_call.h"

static bool la_xact_started = false;

static void
la_exec_start_xact(void)
{
	if (!la_xact_started)
	{
		StartTransactionCommand();
		la_xact_started = true;
	}
}

static void
la_exec_finish_xact(void)
{
	if (la_xact_started)
	{
		CommitTransactionCommand();
		la_xact_started = false;
	}
}

/*
 * psql -c would feed COPY FROM STDIN from its own stdin; a background task
 * has no client, and PostgreSQL would silently read nothing.
 */
static void
la_exec_refuse_client_input(RawStmt *parsetree)
{
	CopyStmt   *copy;

	if (!IsA(parsetree->stmt, CopyStmt))
		return;
	copy = (CopyStmt *) parsetree->stmt;
	if (copy->is_from && copy->filename == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY FROM STDIN is not supported in a background task"),
				 errdetail("A background task has no client to read the data from."),
				 errhint("Copy from a server file or program, or load the data with INSERT.")));
}

/* Analyze, plan and run one statement to completion, discarding its output. */
static void
la_exec_statement(RawStmt *parsetree, const char *query)
{
	CommandTag	tag = CreateCommandTag(parsetree->stmt);
	bool		snapshot_set = false;
	MemoryContext oldcxt;
	List	   *querytrees;
	List	   *plantrees;
	Portal		portal;
	DestReceiver *receiver;
	QueryCompletion qc;

	la_exec_refuse_client_input(parsetree);
	if (analyze_requires_snapshot(parsetree))
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		snapshot_set = true;
	}

	/*
	 * Query and plan trees go in the task context, not the transaction's:
	 * statements such as CREATE INDEX CONCURRENTLY commit and start
	 * transactions of their own while the portal still uses them.
	 */
	oldcxt = MemoryContextSwitchTo(la_task_context());
	querytrees = pg_analyze_and_rewrite_fixedparams(parsetree, query, NULL, 0, NULL);
	plantrees = pg_plan_queries(querytrees, query, CURSOR_OPT_PARALLEL_OK, NULL);
	if (snapshot_set)
		PopActiveSnapshot();

	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, query, tag, plantrees, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);
	MemoryContextSwitchTo(oldcxt);

	receiver = CreateDestReceiver(DestNone);
	(void) PortalRun(portal, FETCH_ALL, true, true, receiver, receiver, &qc);
	receiver->rDestroy(receiver);
	PortalDrop(portal, false);
}

static void
la_exec_query_string(const char *query)
{
	List	   *parsetrees;
	ListCell   *cell;
	bool		implicit_block;
	MemoryContext oldcxt;

	la_exec_start_xact();
	oldcxt = MemoryContextSwitchTo(la_task_context());
	parsetrees = pg_parse_query(query);
	MemoryContextSwitchTo(oldcxt);
	implicit_block = list_length(parsetrees) > 1;

	foreach(cell, parsetrees)
	{
		RawStmt    *parsetree = lfirst_node(RawStmt, cell);

		la_exec_start_xact();
		if (implicit_block)
			BeginImplicitTransactionBlock();
		CHECK_FOR_INTERRUPTS();

		la_exec_statement(parsetree, query);

		if (lnext(parsetrees, cell) == NULL)
		{
			if (implicit_block)
				EndImplicitTransactionBlock();
			la_exec_finish_xact();
		}
		else if (IsA(parsetree->stmt, TransactionStmt))
			la_exec_finish_xact();
		else
			CommandCounterIncrement();
	}
	la_exec_finish_xact();

	/*
	 * psql would roll back a BEGIN left open when its connection closes and
	 * still report success; a task reports the rollback as its failure.
	 */
	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("task ended inside a transaction block"),
				 errdetail("The transaction the task opened with BEGIN was never committed, so it was rolled back."),
				 errhint("End the task's query with COMMIT.")));
}

static bool
la_exec(const char *query, LaError *err, bool report_activity)
{
	volatile bool ok = true;
	int			saved_holdoff = InterruptHoldoffCount;
	int			saved_cancel_holdoff = QueryCancelHoldoffCount;

	if (!la_call_begin(err))
		return false;

	if (report_activity)
		pgstat_report_activity(STATE_RUNNING, query);
	debug_query_string = query;
	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		la_exec_query_string(query);
	}
	PG_CATCH();
	{
		la_xact_started = false;
		la_call_fail(err, saved_holdoff, saved_cancel_holdoff);
		ok = false;
	}
	PG_END_TRY();
	debug_query_string = NULL;
	if (report_activity)
		pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(la_task_context());
	return ok;
}

bool
la_exec_task(const char *query, LaError *err)
{
	/* A cancel that arrived between tasks was not aimed at this one. */
	QueryCancelPending = false;
	return la_exec(query, err, true);
}

/*
 * Run between tasks, before any bookkeeping, so that nothing a task set
 * (GUCs, roles, temp tables, prepared statements, advisory locks, WITH HOLD
 * cursors) leaks into the next task or into the bookkeeping.
 */
bool
la_reset_session(LaError *err)
{
	bool		ok;

	/* A late cancel aimed at the finished task must not break the reset. */
	HOLD_CANCEL_INTERRUPTS();
	ok = la_exec("DISCARD ALL", err, false);
	RESUME_CANCEL_INTERRUPTS();
	return ok;
}
