/*
 * dbguard.c - never stand in the way of DROP DATABASE and its friends
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME and ... SET TABLESPACE, and
 * CREATE DATABASE ... TEMPLATE need the database to themselves: PostgreSQL
 * waits up to 5 s for other sessions to leave, then fails ("database is
 * being accessed by other users"; pg_cron#318, timescaledb#4838, citus#5297).
 * From the utility hook, before PostgreSQL looks, we block new launches into
 * that database (state/blocks.c) and ask our idle workers and scouts there
 * to leave, and wait for them.  A worker running a task is a session like
 * any other: it stops only for DROP DATABASE ... WITH (FORCE), by
 * PostgreSQL's own rules.
 *
 * Only a caller that PostgreSQL will allow to run the command gets this (the
 * same ownership and CREATEDB checks), so nobody can evict another's workers
 * by trying a command that then fails.  The block lasts until the command's
 * transaction ends.
 *
 * The hook also notes work for the launcher at commit: a new database (it
 * may be a copy of one with tasks), COMMIT PREPARED (whose transaction may
 * have queued tasks, and whose commit no callback of ours sees; it may also
 * have finished tasks, so it wakes the database's waiters at once), and
 * ALTER EXTENSION lantern_async UPDATE (tasks queued under an old version
 * wait for it).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/syscache.h"

#include "base/la_compat.h"
#include "hooks/la_hooks.h"
#include "state/la_state.h"

/* Like CountOtherDBBackends: 5 s, checked every 10 ms. */
#define LA_GUARD_WAIT_MS 5000
#define LA_GUARD_POLL_MS 10

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* Databases to note for a scout when this backend's transaction commits. */
#define LA_NOTES_MAX 4
static Oid	la_notes[LA_NOTES_MAX];
static int	la_nnotes = 0;
/* This backend added blocks (state/blocks.c) that its transaction's end releases. */
static bool la_blocking = false;
static bool la_xact_callback_registered = false;

static void
la_guard_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			for (int i = 0; i < la_nnotes; i++)
				la_demand_note(la_notes[i], InvalidOid, 0);
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			la_nnotes = 0;
			/* The launcher looks again while a demand is blocked (see control.Launcher). */
			if (la_blocking)
			{
				la_block_release_mine();
				la_blocking = false;
			}
			break;
		default:
			break;
	}
}

static void
la_guard_register_callback(void)
{
	if (!la_xact_callback_registered)
	{
		RegisterXactCallback(la_guard_xact_callback, NULL);
		la_xact_callback_registered = true;
	}
}

static void
la_note_at_commit(Oid dboid)
{
	la_guard_register_callback();
	if (OidIsValid(dboid) && la_nnotes < LA_NOTES_MAX)
		la_notes[la_nnotes++] = dboid;
}

/* Block launches into the database, ask our processes there to leave, and wait (bounded) until they have. */
static void
la_guard_database(Oid dboid)
{
	la_guard_register_callback();
	la_block_add(dboid);
	la_blocking = true;
	la_slot_evict_database(dboid);
	for (int waited = 0;
		 waited < LA_GUARD_WAIT_MS && la_slot_count_idle_in_database(dboid) > 0;
		 waited += LA_GUARD_POLL_MS)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LA_GUARD_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

static bool
la_db_is_template(Oid dboid)
{
	HeapTuple	tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	bool		istemplate = false;

	if (HeapTupleIsValid(tuple))
	{
		istemplate = ((Form_pg_database) GETSTRUCT(tuple))->datistemplate;
		ReleaseSysCache(tuple);
	}
	return istemplate;
}

static char *
la_option_string(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, name) == 0 && opt->arg != NULL)
			return defGetString(opt);
	}
	return NULL;
}

/* The database a statement needs to itself, if the caller may run it; InvalidOid otherwise. */
static Oid
la_guarded_database(Node *stmt)
{
	Oid			dboid = InvalidOid;
	bool		allowed = false;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			dboid = get_database_oid(((DropdbStmt *) stmt)->dbname, true);
			allowed = OidIsValid(dboid) && la_database_ownercheck(dboid, GetUserId());
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType != OBJECT_DATABASE)
				break;
			dboid = get_database_oid(((RenameStmt *) stmt)->subname, true);
			allowed = OidIsValid(dboid) && la_database_ownercheck(dboid, GetUserId()) &&
				la_have_createdb_privilege();
			break;
		case T_AlterDatabaseStmt:
			if (la_option_string(((AlterDatabaseStmt *) stmt)->options, "tablespace") == NULL)
				break;
			dboid = get_database_oid(((AlterDatabaseStmt *) stmt)->dbname, true);
			allowed = OidIsValid(dboid) && la_database_ownercheck(dboid, GetUserId());
			break;
		case T_CreatedbStmt:
			{
				char	   *template = la_option_string(((CreatedbStmt *) stmt)->options, "template");

				dboid = get_database_oid(template ? template : "template1", true);
				allowed = OidIsValid(dboid) && la_have_createdb_privilege() &&
					(la_db_is_template(dboid) || la_database_ownercheck(dboid, GetUserId()));
				break;
			}
		default:
			break;
	}
	return allowed ? dboid : InvalidOid;
}

static void
la_utility_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	Oid			guarded = la_shmem_attached() ? la_guarded_database(stmt) : InvalidOid;

	la_sqlguard_check_utility(stmt);
	if (OidIsValid(guarded))
		la_guard_database(guarded);

	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

	/* Only after it succeeded: the new database exists, the prepared transaction committed. */
	if (!la_shmem_attached())
		return;
	if (IsA(stmt, CreatedbStmt))
		la_note_at_commit(get_database_oid(((CreatedbStmt *) stmt)->dbname, true));
	else if (IsA(stmt, TransactionStmt) &&
			 ((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED &&
			 OidIsValid(get_extension_oid(LA_EXTENSION_NAME, true)))
	{
		la_note_at_commit(MyDatabaseId);
		/* It may have finished tasks: their waiters look again (state/waiters.c). */
		la_wait_wake_database();
	}
	else if (IsA(stmt, AlterExtensionStmt) &&
			 strcmp(((AlterExtensionStmt *) stmt)->extname, LA_EXTENSION_NAME) == 0)
		la_note_at_commit(MyDatabaseId);
}

void
la_dbguard_install_hook(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = la_utility_hook;
}
