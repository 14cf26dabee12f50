/*
 * wait_caller.c - what lantern.wait_task() may not take from its caller
 *
 * wait_task commits before it sleeps, so that it holds no snapshot a
 * CREATE INDEX CONCURRENTLY task would wait for: it must be CALLed where a
 * procedure may commit.  It also commits once at its start, whatever the
 * task's state (before, only a wait that had to sleep committed, so a DO
 * block's INSERT before the CALL survived a later RAISE or not depending
 * on whether the task had finished).  Here are the refusals that keep that
 * commit from taking the caller's own work with it, whatever the task's
 * state; README "Wait" lists them and what the commit still ends.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"

#include "base/la_compat.h"
#include "functions/la_functions.h"

/* The CALL may commit: not in a transaction block, a function, an EXCEPTION block. */
void
la_wait_require_nonatomic(FunctionCallInfo fcinfo)
{
	CallContext *call = (fcinfo->context && IsA(fcinfo->context, CallContext)) ?
		(CallContext *) fcinfo->context : NULL;

	if (call == NULL || call->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("lantern.wait_task() cannot run inside a transaction block"),
				 errdetail("While it waits it must hold no snapshot: a CREATE INDEX CONCURRENTLY task would wait for that snapshot, and so for its own waiter."),
				 errhint("CALL lantern.wait_task() on its own, outside BEGIN ... COMMIT, functions, and PL/pgSQL blocks with an EXCEPTION clause.")));
}

#define LA_WAIT_COMMIT_HINT \
	"End the transaction first (COMMIT or ROLLBACK in the procedure or DO block), or CALL lantern.wait_task() on its own."

/* A SET LOCAL (or set_config(..., true)) in effect: a commit would end it. */
static const char *
la_wait_local_setting(void)
{
	int			count;
	struct config_generic **vars = la_guc_variables(&count);

	for (int i = 0; i < count; i++)
		for (GucStack *stack = vars[i]->stack; stack != NULL; stack = stack->prev)
			if (stack->state == GUC_LOCAL || stack->state == GUC_SET_LOCAL)
				return vars[i]->name;
	return NULL;
}

/*
 * A cursor a commit would close: open and idle, neither WITH HOLD nor pinned
 * (a PL/pgSQL FOR loop pins its query's portal, and a commit keeps that).
 * The portals are listed by pg_cursors only.
 */
static char *
la_wait_open_cursor(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *found = NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT name FROM pg_catalog.pg_cursors", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "lantern.wait_task() could not list the open cursors");
	for (uint64 i = 0; i < SPI_processed && found == NULL; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		Portal		portal = name ? GetPortalByName(name) : NULL;

		if (PortalIsValid(portal) && portal->status == PORTAL_READY && !portal->portalPinned &&
			(portal->cursorOptions & CURSOR_OPT_HOLD) == 0)
			found = MemoryContextStrdup(cxt, name);
	}
	PopActiveSnapshot();
	SPI_finish();
	return found;
}

/*
 * wait_task commits the transaction it is called in before its first look,
 * so that what it does never depends on whether the task had finished.  In
 * a DO block or a procedure that transaction may hold the caller's own
 * work: refuse when the commit would make it permanent or end part of it.
 * What is left for the commit to end is documented (README "Wait"): locks
 * taken without writing, SET CONSTRAINTS, and notifications, which it sends.
 */
void
la_wait_require_nothing_to_commit(void)
{
	const char *setting;
	char	   *cursor;

	if (IsSubTransaction())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("lantern.wait_task() cannot run inside a subtransaction"),
				 errdetail("It commits the transaction it is called in before it waits."),
				 errhint(LA_WAIT_COMMIT_HINT)));
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("lantern.wait_task() cannot run in a transaction that has written data"),
				 errdetail("It commits the transaction it is called in before it waits, and would commit those writes with it."),
				 errhint(LA_WAIT_COMMIT_HINT)));
	/* SET TRANSACTION READ ONLY is no SET LOCAL, yet lasts as long as the transaction. */
	if (XactReadOnly != DefaultXactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("lantern.wait_task() cannot run while SET TRANSACTION %s is in effect",
						XactReadOnly ? "READ ONLY" : "READ WRITE"),
				 errdetail("It commits the transaction it is called in before it waits, which would end the setting."),
				 errhint(LA_WAIT_COMMIT_HINT)));
	if ((setting = la_wait_local_setting()) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("lantern.wait_task() cannot run while a SET LOCAL of \"%s\" is in effect", setting),
				 errdetail("It commits the transaction it is called in before it waits, which would end the setting."),
				 errhint(LA_WAIT_COMMIT_HINT)));
	if ((cursor = la_wait_open_cursor()) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("lantern.wait_task() cannot run while cursor \"%s\" is open", cursor),
				 errdetail("It commits the transaction it is called in before it waits, which would close the cursor."),
				 errhint(LA_WAIT_COMMIT_HINT)));
}
