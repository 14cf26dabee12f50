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
#include "storage/proc.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "la_call.h"
#include "la_exec.h"
#include "base/la_compat.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

static bool la_xact_started = false;

/* The task being run (la_exec.h). */
LaRun		la_run;

/*
 * Like exec_simple_query's start_xact_command: each statement of the string
 * gets its own statement_timeout (the last one's runs to the commit), so a
 * SET statement_timeout earlier in the string applies to what follows.
 */
static void
la_exec_start_xact(void)
{
	if (!la_xact_started)
	{
		StartTransactionCommand();
		la_xact_started = true;
	}
	/* The task's timeout is the task's: not the reset's that follows it. */
	if (StatementTimeout > 0 && la_run.active)
	{
		if (!get_timeout_active(STATEMENT_TIMEOUT))
			enable_timeout_after(STATEMENT_TIMEOUT, StatementTimeout);
	}
	else if (get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);
}

static void
la_exec_stop_statement_timeout(void)
{
	if (get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);
}

static void
la_exec_finish_xact(void)
{
	if (la_xact_started)
	{
		la_exec_stop_statement_timeout();
		CommitTransactionCommand();
		la_xact_started = false;
	}
}

/* The string's last statement commits an explicit transaction block. */
static bool
la_exec_commits_block(RawStmt *parsetree)
{
	TransactionStmt *stmt;

	if (!IsA(parsetree->stmt, TransactionStmt) || !IsTransactionBlock())
		return false;
	stmt = (TransactionStmt *) parsetree->stmt;
	return stmt->kind == TRANS_STMT_COMMIT && !stmt->chain;
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
	(void) la_portal_run(portal, true, receiver, &qc);
	receiver->rDestroy(receiver);
	PortalDrop(portal, false);
}

/*
 * psql would roll back a BEGIN left open when its connection closes and
 * still report success; a task reports the rollback as its failure.
 */
static void
la_exec_refuse_open_block(void)
{
	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("task ended inside a transaction block"),
				 errdetail("The transaction the task opened with BEGIN was never committed, so it was rolled back."),
				 errhint("End the task's query with COMMIT.")));
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
		bool		last = lnext(parsetrees, cell) == NULL;

		la_exec_start_xact();
		if (implicit_block)
			BeginImplicitTransactionBlock();
		CHECK_FOR_INTERRUPTS();

		/* BEGIN ... COMMIT: the outcome goes in before the COMMIT. */
		if (last && la_exec_commits_block(parsetree))
			la_exec_finish_task();

		la_exec_statement(parsetree, query);

		if (last)
		{
			if (implicit_block)
				EndImplicitTransactionBlock();
			/* Not after a ROLLBACK or PREPARE, nor with a BEGIN left open. */
			if (!IsTransactionBlock())
				la_exec_finish_task();
			la_exec_finish_xact();
		}
		else if (IsA(parsetree->stmt, TransactionStmt))
			la_exec_finish_xact();
		else
		{
			CommandCounterIncrement();
			/* As psql -c: the next statement starts a timeout of its own. */
			la_exec_stop_statement_timeout();
		}
	}
	la_exec_finish_xact();
	la_exec_refuse_open_block();
}

/*
 * pg_stat_activity shows the task's jobid: application_name is set as a
 * client's would be at connection (the task may change it; the reset
 * between tasks puts the role's own back).  Nothing trusts this name:
 * lantern.running_tasks() reads the slots.
 */
static void
la_exec_name_session(int64 jobid)
{
	char		name[NAMEDATALEN];

	snprintf(name, sizeof(name), "lantern_async task " INT64_FORMAT, jobid);
	(void) set_config_option("application_name", name, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, 0, false);
}

static bool
la_exec(const char *query, LaError *err)
{
	bool		is_task = la_run.active;
	volatile bool ok = true;
	LaSaved		saved;

	if (!la_call_begin(err))
		return false;
	la_save(&saved);

	if (is_task)
		pgstat_report_activity(STATE_RUNNING, query);
	debug_query_string = query;
	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		if (is_task)
		{
			/* Registers a callback once: it allocates, so inside the PG_TRY. */
			la_exec_watch_commits();
			la_exec_name_session(la_run.jobid);
		}
		/* Accepted before the task started (between claim and here): do not run it. */
		if (is_task && la_slot_cancel_requested(la_run.slot, la_run.jobid))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("canceling statement due to user request")));
		if (is_task)
			la_exec_arm_limit();
		la_exec_query_string(query);
		/* Normally disarmed at the point of no return already. */
		la_exec_disarm_limit();
	}
	PG_CATCH();
	{
		bool		limit_passed = la_exec_limit_passed();

		la_xact_started = false;
		la_run.recorded = false;
		/* As PostgresMain does after an error: no timer may outlive the statement. */
		disable_all_timeouts(false);
		QueryCancelPending = false;
		if (limit_passed)
			la_exec_report_limit();
		la_call_fail(err, &saved);
		ok = false;
	}
	PG_END_TRY();
	debug_query_string = NULL;
	if (is_task)
		pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(la_task_context());
	return ok;
}

/*
 * Run a claimed task, stopped after run->limit_us microseconds.
 * run->recorded tells whether its success was committed with its work
 * (otherwise the worker loop records the outcome); run->committed whether
 * any transaction of it committed work, which a retry would do again.
 */
bool
la_exec_task(LaTaskRun *run, LaError *err)
{
	bool		ok;

	la_run.active = true;
	la_run.slot = run->slot;
	la_run.jobid = run->jobid;
	la_run.tasks_relid = run->tasks_relid;
	la_run.finishing = false;
	la_run.recorded = false;
	la_run.limit_us = Max(run->limit_us, 0);
	la_run.limit_per_task = run->limit_per_task;
	la_run.attempt = run->attempt;
	la_run.attempt_started = (TimestampTz) run->attempt_started;
	la_run.committing = la_run.committed = false;
	la_exec_clear_limit();

	/*
	 * An administrator's cancel that arrived between tasks was aimed at
	 * nothing; ours are in the slot, and checked after this.
	 */
	QueryCancelPending = false;
	ok = la_exec(run->query, err);
	run->recorded = ok && la_run.recorded;
	run->committed = la_run.committed;
	la_run.active = false;
	return ok;
}
