/*
 * la_wait.c - sleeping on the process latch, signals and interrupts
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"

#include "la_call.h"

/*
 * Sleep until the latch is set or the timeout passes, then absorb what
 * arrived: a config reload, a ProcSignalBarrier (DROP DATABASE waits for
 * every process to absorb one), a stray cancel.  Returns 1 when SIGTERM asked
 * the process to stop; Go then returns and the C caller exits.
 */
int
la_wait(long timeout_ms)
{
	LaSaved		saved;

	la_save(&saved);
	PG_TRY();
	{
		/*
		 * Going to sleep (not a mere check for signals, timeout 0): report
		 * what is still pending to the cumulative statistics, as an idle
		 * backend does (la_reset.c reports between tasks, rate-limited).
		 */
		if (timeout_ms != 0 && !IsTransactionOrTransactionBlock())
			(void) pgstat_report_stat(true);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* With SIGTERM pending, CHECK_FOR_INTERRUPTS would FATAL here: let Go return. */
		if (!ProcDiePending)
		{
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* e.g. a cancel aimed at nothing: there is no statement to cancel */
		FlushErrorState();
		la_restore(&saved);
	}
	PG_END_TRY();
	return ProcDiePending ? 1 : 0;
}
