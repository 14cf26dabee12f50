/*
 * shmem.c - lantern_async's shared memory: its creation, the launcher's
 * latch and the reconciliation flag (the owner of each structure in it is
 * listed in la_state.h; the layout is in la_state_internal.h)
 */
#include "postgres.h"

#include "miscadmin.h"
#include <signal.h>

#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "base/la_compat.h"
#include "state/la_state.h"
#include "state/la_state_internal.h"

LaShmem    *la_shmem = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
la_shmem_size(void)
{
	return add_size(offsetof(LaShmem, slots),
					mul_size(sizeof(LaSlot), la_max_workers));
}

static void
la_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(la_shmem_size());
	RequestAddinShmemSpace(la_wait_shmem_size());
	/* the demand board's and the lost list's */
	RequestNamedLWLockTranche(LA_LIBRARY_NAME, 2);
}

static void
la_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	la_shmem = ShmemInitStruct("lantern_async", la_shmem_size(), &found);
	if (!found)
	{
		memset(la_shmem, 0, la_shmem_size());
		SpinLockInit(&la_shmem->mutex);
		la_shmem->launcher_procno = -1;
		la_shmem->board_lock = &(GetNamedLWLockTranche(LA_LIBRARY_NAME))[0].lock;
		la_shmem->lost_lock = &(GetNamedLWLockTranche(LA_LIBRARY_NAME))[1].lock;
		la_shmem->nslots = la_max_workers;
		for (int i = 0; i < la_shmem->nslots; i++)
		{
			pg_atomic_init_u64(&la_shmem->slots[i].jobid, 0);
			pg_atomic_init_u64(&la_shmem->slots[i].cancel_jobid, 0);
		}
	}
	la_wait_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
la_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = la_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = la_shmem_startup;
}

/* Whether this process has the segment (a hook may run before it is created). */
bool
la_shmem_attached(void)
{
	return la_shmem != NULL;
}

static void
la_launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->launcher_procno = -1;
	SpinLockRelease(&la_shmem->mutex);
}

void
la_launcher_attach(void)
{
	on_shmem_exit(la_launcher_detach, (Datum) 0);
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->launcher_procno = LA_MY_PROCNO;
	SpinLockRelease(&la_shmem->mutex);
}

/* Safe to call from any backend, in any state: it never errors. */
void
la_launcher_wake(void)
{
	int			procno;

	if (la_shmem == NULL)
		return;
	SpinLockAcquire(&la_shmem->mutex);
	procno = la_shmem->launcher_procno;
	SpinLockRelease(&la_shmem->mutex);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * Shared memory is created anew at every server start and after every crash,
 * before any worker can run, so rows still 'running' when it is fresh have no
 * live process.  The launcher's first sweep of every database fails them.
 */
bool
la_reconcile_needed(void)
{
	bool		needed;

	SpinLockAcquire(&la_shmem->mutex);
	needed = !la_shmem->reconciled;
	SpinLockRelease(&la_shmem->mutex);
	return needed;
}

void
la_reconcile_done(void)
{
	SpinLockAcquire(&la_shmem->mutex);
	la_shmem->reconciled = true;
	SpinLockRelease(&la_shmem->mutex);
}
