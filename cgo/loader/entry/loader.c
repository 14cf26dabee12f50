/*
 * loader.c - the part of lantern_async that the postmaster loads
 *
 * Why a separate loader: shared_preload_libraries are loaded by the
 * postmaster, which later fork()s every backend without exec().  A Go
 * c-shared library starts the Go runtime and its threads as soon as it is
 * loaded; after fork() only the forking thread survives, so the runtime of
 * every child would be broken (a goroutine, time.Sleep or GC hangs forever).
 * This library is therefore plain C: it defines the GUCs, shared memory
 * and the utility and parse-analysis hooks, registers the launcher, and provides the
 * background-worker entry points.  Each worker dlopen()s the Go library itself, after the fork
 * (golib.c).
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"

#include "base/la_compat.h"
#include "entry/la_entry.h"
#include "hooks/la_hooks.h"
#include "state/la_state.h"

PG_MODULE_MAGIC;

void		_PG_init(void);
PGDLLEXPORT void lantern_async_launcher_main(Datum arg);
PGDLLEXPORT void lantern_async_worker_main(Datum arg);
PGDLLEXPORT void lantern_async_scout_main(Datum arg);

/*
 * Fill in a lantern_async background worker: the launcher (registered
 * here, at server start), the task workers and the scouts (registered by
 * the launcher, helpers/la_launch.c) differ only in entry point, name and restart.
 */
void
la_worker_describe(BackgroundWorker *worker, const char *function, const char *type,
				   const char *name, int restart_time)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_time;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, LA_LIBRARY_NAME);
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
}

static void
la_register_launcher(void)
{
	BackgroundWorker worker;

	la_worker_describe(&worker, "lantern_async_launcher_main", LA_LAUNCHER_TYPE,
					   LA_LAUNCHER_TYPE, 5);
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("lantern_async must be loaded via shared_preload_libraries"),
				 errhint("Add lantern_async to shared_preload_libraries in postgresql.conf and restart the server.")));

	la_guc_define();
	la_shmem_install_hooks();
	la_dbguard_install_hook();
	la_sqlguard_install_hook();
	la_register_launcher();
}

static int	la_worker_slot = -1;

/*
 * lantern.cancel_task() signals a worker with SIGUSR2 (slot_cancel.c); SIGINT
 * keeps PostgreSQL's own handler, so an administrator's pg_cancel_backend()
 * works as in any session.  A SIGUSR2 that arrives after its task finished
 * finds the slot naming another task, or none, and is dropped.
 */
static void
la_worker_cancel_handler(SIGNAL_ARGS)
{
	if (la_worker_slot >= 0 && la_slot_cancel_is_current(la_worker_slot))
		StatementCancelHandler(postgres_signal_arg);
}

/*
 * Common start of every lantern_async process.  PostgreSQL's own handlers
 * go in first so that signals arriving during start-up are not lost.
 */
static void
la_worker_signals(void)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
}

/*
 * The launcher connects to no database (only the shared catalogs, to see
 * databases and roles): it never stands in a DROP DATABASE's way, and it
 * finds work on the demand board, not in any table.
 */
void
lantern_async_launcher_main(Datum arg)
{
	la_worker_signals();
	la_launcher_attach();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(LA_LAUNCHER_TYPE);
	proc_exit(la_golib_run("LanternAsyncLauncherMain", 0));
}

/* A task's ERROR is its outcome, and a scout's is logged: never FATAL. */
static void
la_exit_on_error_off(void)
{
	/*
	 * exit_on_error (which a role may set for itself) would make an ERROR
	 * FATAL, and the error would be lost with the process.  An override
	 * outranks any SET and survives RESET ALL.
	 */
	SetConfigOption("exit_on_error", "off", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * A scout sweeps one database as the bootstrap superuser (InvalidOid),
 * running only the extension's fixed SQL, and exits.
 */
void
lantern_async_scout_main(Datum arg)
{
	int			slot = DatumGetInt32(arg);
	LaSlotKind	kind;
	Oid			dboid;
	Oid			roleid;

	la_slot_attach(slot);
	la_worker_signals();
	la_slot_target(slot, &kind, &dboid, &roleid);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("application_name", LA_SCOUT_TYPE, PGC_BACKEND, PGC_S_CLIENT);
	la_exit_on_error_off();
	if (la_golib_run("LanternAsyncScoutMain", slot) == 0)
		la_slot_mark_clean(slot);
	proc_exit(0);
}

void
lantern_async_worker_main(Datum arg)
{
	int			slot = DatumGetInt32(arg);
	LaSlotKind	kind;
	Oid			dboid;
	Oid			roleid;

	/* Attach before connecting: a refused connection must still mark the slot. */
	la_slot_attach(slot);
	la_worker_slot = slot;
	la_fatal_install_hook(slot);
	pqsignal(SIGUSR2, la_worker_cancel_handler);
	la_worker_signals();
	la_slot_target(slot, &kind, &dboid, &roleid);

	/*
	 * A real session of the submitting role: the task's SQL gets exactly that
	 * role's rights, and nothing it runs can reach a superuser identity.
	 */
	BackgroundWorkerInitializeConnectionByOid(dboid, roleid, LA_WORKER_CONNECT_FLAGS);
	/* As if sent by a client: DISCARD ALL between tasks keeps it. */
	SetConfigOption("application_name", LA_WORKER_TYPE, PGC_BACKEND, PGC_S_CLIENT);
	la_exit_on_error_off();
	if (la_golib_run("LanternAsyncWorkerMain", slot) == 0)
		la_slot_mark_clean(slot);
	proc_exit(0);
}
