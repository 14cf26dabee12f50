/*
 * la_reset.c - the session reset between two tasks
 *
 * What DISCARD ALL does (commands/discard.c), step by step, but one: the
 * plan cache is kept.  DISCARD ALL's ResetPlanCache() throws away every
 * saved plan of the process, the extension's own claim and outcome plans
 * with the task's, and replanning those was about 40 % of a trivial task's
 * cost.  Keeping plans is what any long session does between statements:
 * a plan is revalidated whenever something it depends on changes (a table,
 * a function, search_path, the role for row-level security), and the
 * task's own state that plans could refer to is gone: its prepared
 * statements are dropped, its temporary tables removed, its settings and
 * role reset.  A task can observe another's cached plans only through
 * timing, as in a session.
 *
 * Then a fresh random seed: a new session's random() starts from one, and
 * DISCARD ALL does not undo a setseed() of the previous task.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/async.h"
#include "commands/prepare.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/timestamp.h"

#include "la_call.h"

static void
la_reset_reseed(void)
{
	uint64		r;
	double		seed;

	if (!pg_strong_random(&r, sizeof(r)))
		r = (uint64) MyProcPid ^ (uint64) GetCurrentTimestamp();
	/* 53 random bits, in [-1, 1) as setseed() wants */
	seed = (double) (r >> 11) / (double) (UINT64CONST(1) << 52) - 1.0;
	(void) DirectFunctionCall1(setseed, Float8GetDatum(seed));
}

static void
la_reset_steps(void)
{
	/* Closing portals (WITH HOLD cursors) may run user code: first, as DISCARD ALL does. */
	PortalHashTableDeleteAll();
	SetPGVariable("session_authorization", NIL, false);
	ResetAllOptions();
	DropAllPreparedStatements();
	Async_UnlistenAll();
	LockReleaseAll(USER_LOCKMETHOD, true);
	/* ResetPlanCache() left out on purpose: see the top of this file. */
	ResetTempTableNamespace();
	ResetSequenceCaches();
	la_reset_reseed();
}

/*
 * Run between tasks, before any bookkeeping, so that nothing a task set
 * (GUCs, roles, temp tables, prepared statements, advisory locks, WITH HOLD
 * cursors, LISTEN, sequence caches, the random seed) leaks into the next
 * task or into the bookkeeping.
 */
bool
la_reset_session(LaError *err)
{
	volatile bool ok = true;
	LaSaved		saved;

	if (!la_call_begin(err))
		return false;
	/* A late cancel aimed at the finished task must not break the reset. */
	HOLD_CANCEL_INTERRUPTS();
	la_save(&saved);
	PG_TRY();
	{
		la_own_transaction_start();
		la_reset_steps();
		CommitTransactionCommand();
		/*
		 * Out of any transaction now: hand the tasks' table and WAL counts to
		 * the cumulative statistics (at most every PGSTAT_MIN_INTERVAL), as a
		 * backend does between statements.  A worker that never idles would
		 * otherwise report nothing until it exits, and autovacuum would
		 * never see the dead rows of lantern.tasks or of the tasks' tables.
		 */
		(void) pgstat_report_stat(false);
	}
	PG_CATCH();
	{
		la_call_fail(err, &saved);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(la_task_context());
	RESUME_CANCEL_INTERRUPTS();
	return ok;
}
