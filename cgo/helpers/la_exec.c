/*
 * la_exec.c - run a task's query string the way the simple query protocol
 * does (psql -c): one implicit transaction for a multi-statement string,
 * explicit BEGIN/COMMIT allowed, and every statement run top-level, so that
 * CREATE INDEX CONCURRENTLY and VACUUM work.  SPI cannot do this: it runs
 * statements as if inside a function.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
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
#include "base/la_compat.h"
#include "tables/la_tables.h"
#include "state/la_state.h"

static bool la_xact_started = false;

/* The task being run, for the end of its last transaction. */
typedef struct LaRun
{
	bool		active;			/* a task runs (not the reset between tasks) */
	int			slot;
	int64		jobid;
	Oid			tasks_relid;
	bool		finishing;		/* past la_slot_begin_finishing() */
	bool		recorded;		/* its success is written in the open transaction */
	int64		limit_us;		/* how long it may run, 0: no limit */
	bool		limit_per_task; /* the limit is its own timeout, not lantern_async.task_timeout */
} LaRun;

static LaRun la_run;

/*
 * The task's time limit: one timer for the whole string, armed before its
 * first statement and disarmed at its point of no return, across every
 * transaction the string runs (COMMIT in the middle, CREATE INDEX
 * CONCURRENTLY's own).  When it passes it sends a query cancel, as
 * statement_timeout does; a flag its handler sets tells this cancel from an
 * administrator's pg_cancel_backend() (the same SIGINT), and the
 * cancel_task() flag in the slot from both (a cancel accepted there ends
 * the task canceled whatever stopped it).  A task can catch a cancel (an
 * EXCEPTION WHEN query_canceled in PL/pgSQL): the cancel is sent again
 * every LA_LIMIT_REPEAT_MS until the task ends, and a task that still
 * reaches its end fails there (la_exec_finish_task).
 */
#define LA_LIMIT_REPEAT_MS 1000

static TimeoutId la_limit_timeout;
static bool la_limit_registered = false;

/*
 * Set by the timer (a repeating timeout's own indicator is cleared each
 * time it is re-armed), cleared when a task's limit is armed or forgotten.
 */
static volatile sig_atomic_t la_limit_fired = false;

/*
 * As StatementTimeoutHandler: SIGINT to the whole process group, so that a
 * program the task started (COPY ... TO PROGRAM) is interrupted too.
 */
static void
la_exec_limit_handler(void)
{
	la_limit_fired = true;
#ifdef HAVE_SETSID
	kill(-MyProcPid, SIGINT);
#endif
	kill(MyProcPid, SIGINT);
}

/* Forget the previous task's limit: its timer and whether it passed. */
static void
la_exec_clear_limit(void)
{
	if (la_limit_registered)
		disable_timeout(la_limit_timeout, false);
	la_limit_fired = false;
}

static void
la_exec_arm_limit(void)
{
	TimestampTz now;

	if (la_run.limit_us <= 0)
		return;
	if (!la_limit_registered)
	{
		la_limit_timeout = RegisterTimeout(USER_TIMEOUT, la_exec_limit_handler);
		la_limit_registered = true;
	}
	la_limit_fired = false;
	now = GetCurrentTimestamp();
	/* A limit beyond the end of time is no limit. */
	if (la_run.limit_us > PG_INT64_MAX - now)
		return;
	enable_timeout_every(la_limit_timeout, now + la_run.limit_us, LA_LIMIT_REPEAT_MS);
}

/* Whether the task's limit has passed (its timer fired); the timer stays as it is. */
static bool
la_exec_limit_passed(void)
{
	return la_run.limit_us > 0 && la_limit_fired;
}

/* Stop the timer; whether it fired is kept. */
static void
la_exec_disarm_limit(void)
{
	if (la_limit_registered && get_timeout_active(la_limit_timeout))
		disable_timeout(la_limit_timeout, false);
}

/*
 * A limit as an interval reads in the default IntervalStyle ('postgres'),
 * hours carried into days: 00:00:02, 00:00:01.5, 1 day 12:00:00, 2 days.
 */
static char *
la_exec_format_limit(int64 usecs)
{
	StringInfoData buf;
	int64		days = usecs / USECS_PER_DAY;
	int64		rest = usecs % USECS_PER_DAY;

	initStringInfo(&buf);
	if (days > 0)
		appendStringInfo(&buf, INT64_FORMAT " day%s", days, days == 1 ? "" : "s");
	if (rest > 0 || days == 0)
	{
		int			frac = (int) (rest % USECS_PER_SEC);

		appendStringInfo(&buf, "%s%02d:%02d:%02d", days > 0 ? " " : "",
						 (int) (rest / USECS_PER_HOUR),
						 (int) (rest % USECS_PER_HOUR / USECS_PER_MINUTE),
						 (int) (rest % USECS_PER_MINUTE / USECS_PER_SEC));
		if (frac > 0)
		{
			char		digits[8];
			int			n;

			snprintf(digits, sizeof(digits), "%06d", frac);
			for (n = 6; digits[n - 1] == '0'; n--)
				;
			appendStringInfo(&buf, ".%.*s", n, digits);
		}
	}
	return buf.data;
}

/* The error of a task stopped by its time limit; context is the cancel's, or NULL. */
static void
la_exec_limit_error(const char *context)
{
	char	   *limit = la_exec_format_limit(la_run.limit_us);

	if (la_run.limit_per_task)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling task due to task timeout"),
				 errdetail("The task ran for longer than its time limit of %s (the timeout given to lantern.async_task()).",
						   limit),
				 errhint("Submit the task again with a longer timeout."),
				 context ? (errcontext("%s", context)) : 0));
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("canceling task due to task timeout"),
			 errdetail("The task ran for longer than its time limit of %s (lantern_async.task_timeout).",
					   limit),
			 errhint("Raise lantern_async.task_timeout for the role or the database, "
					 "or give the task a timeout of its own in lantern.async_task()."),
			 context ? (errcontext("%s", context)) : 0));
}

/*
 * In la_exec's PG_CATCH, once the limit is known to have passed: the query
 * cancel it sent reads "canceling statement due to user request", so it is
 * replaced by the error that says what happened, keeping its context (where
 * the task was).  Any other error stays as it is.  The new error is left on
 * the error stack, for la_call_fail().
 */
static void
la_exec_report_limit(void)
{
	MemoryContext oldcxt;
	ErrorData  *cancel;

	if (geterrcode() != ERRCODE_QUERY_CANCELED)
		return;
	oldcxt = MemoryContextSwitchTo(la_task_context());
	cancel = CopyErrorData();
	FlushErrorState();
	PG_TRY();
	{
		la_exec_limit_error(cancel->context);
	}
	PG_CATCH();
	{
		/* the new error, on the stack */
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
}

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

/* Write the task's success into the transaction about to commit its work. */
static void
la_exec_record_success(void)
{
	LaPrivileged p;
	LaSettle	s = {
		.jobid = la_run.jobid,
		.from_status = "running",
		.to_status = "succeeded",
	};

	/*
	 * Only if the queue's table can be locked at once: waiting here (with
	 * the bookkeeping's lock timeout) could fail the task's own transaction
	 * because of a lock on the queue; the worker loop records the outcome
	 * after the commit instead.
	 */
	if (!ConditionalLockRelationOid(la_run.tasks_relid, RowExclusiveLock))
		return;
	PushActiveSnapshot(GetTransactionSnapshot());
	la_privileged_begin(&p, RowExclusiveLock);
	if (p.installed && p.cat.tasks == la_run.tasks_relid)
		la_run.recorded = la_queue_settle(&p.cat, &s) == 1;
	la_privileged_end(&p);
	PopActiveSnapshot();
}

/*
 * The task's own code that COMMIT would run, run now, while the time limit
 * and a cancel can still stop it: deferred triggers, and the queries of
 * WITH HOLD cursors, which COMMIT runs to their end to keep their rows.
 * Each may queue more of the other (a cursor's query inserting into a
 * table with a deferred trigger, a trigger declaring a cursor), so this
 * loops as CommitTransaction does, until neither has anything left; the
 * COMMIT that follows then finds nothing of either to run.  What it still
 * runs is not user code: ON COMMIT DELETE ROWS and DROP of temporary
 * tables, closing large objects, the extension's bookkeeping and
 * PostgreSQL's own (and any other extension's pre-commit callbacks).
 */
static void
la_exec_run_commit_user_code(void)
{
	for (;;)
	{
		AfterTriggerFireDeferred();
		/* Persists held cursors, drops the others, as COMMIT would. */
		if (!PreCommit_Portals(false))
			break;
	}
}

/*
 * Called once the last statement has run, in the transaction that will
 * commit the end of the task's work: from here on a cancel_task() is too
 * late (and says so), and an accepted one stops the task now.  What COMMIT
 * still runs after this is the extension's own work and PostgreSQL's
 * (see la_exec_run_commit_user_code).  The success is recorded in this
 * same transaction, so that 'succeeded' and the work commit together or
 * not at all, even across a crash; where it cannot be or need not be
 * (below), the worker loop records it after the session's reset.
 */
static void
la_exec_finish_task(void)
{
	if (!la_run.active || la_run.finishing)
		return;

	la_exec_run_commit_user_code();

	/*
	 * The limit covers the task's own work, up to here: from now on its
	 * outcome is being decided.  One that passed a moment ago, before its
	 * cancel was processed, still stops the task.
	 */
	la_exec_disarm_limit();
	if (la_exec_limit_passed())
		la_exec_limit_error(NULL);
	if (!la_slot_begin_finishing(la_run.slot, la_run.jobid))
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling statement due to user request")));
	la_run.finishing = true;

	/*
	 * Not in a read-only transaction (it cannot write), nor in a
	 * serializable one: an update of the queue there would enter the
	 * task's serialization graph, and concurrent serializable tasks would
	 * fail (40001) because of the bookkeeping rather than their own work.
	 * Nor when the transaction wrote nothing (no xid): it has no work to
	 * commit with the success, and its commit flushes no WAL, so the next
	 * claim records the success in its own flush (one per task, not two).
	 */
	if (!XactReadOnly && !IsolationIsSerializable() &&
		TransactionIdIsValid(GetTopTransactionIdIfAny()))
		la_exec_record_success();
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
			la_exec_name_session(la_run.jobid);
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
 * Run a claimed task, stopped after limit_us microseconds (0: no limit;
 * limit_per_task: the limit is the task's own timeout rather than
 * lantern_async.task_timeout, for the error message).  *recorded tells
 * whether its success was committed with its work; otherwise the worker
 * loop records the outcome.
 */
bool
la_exec_task(int slot, int64_t jobid, uint32_t tasks_relid, const char *query,
			 int64_t limit_us, bool limit_per_task, bool *recorded, LaError *err)
{
	bool		ok;

	la_run.active = true;
	la_run.slot = slot;
	la_run.jobid = jobid;
	la_run.tasks_relid = tasks_relid;
	la_run.finishing = false;
	la_run.recorded = false;
	la_run.limit_us = Max(limit_us, 0);
	la_run.limit_per_task = limit_per_task;
	la_exec_clear_limit();

	/*
	 * An administrator's cancel that arrived between tasks was aimed at
	 * nothing; ours are in the slot, and checked after this.
	 */
	QueryCancelPending = false;
	ok = la_exec(query, err);
	*recorded = ok && la_run.recorded;
	la_run.active = false;
	return ok;
}

