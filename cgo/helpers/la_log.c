/*
 * la_log.c - server log messages from Go
 */
#include "postgres.h"

#include "miscadmin.h"

#include "la_call.h"

/*
 * errfinish() ends with CHECK_FOR_INTERRUPTS(), which could FATAL here when
 * a SIGTERM is pending; hold interrupts so that logging never exits the
 * process and shutdown goes through la_wait() instead.
 */
void
la_log(int level, const char *message)
{
	LaSaved		saved;

	la_save(&saved);
	HOLD_INTERRUPTS();
	PG_TRY();
	{
		ereport(level, (errmsg_internal("%s", message)));
	}
	PG_CATCH();
	{
		/* errfinish zeroed the holdoff count: RESUME_INTERRUPTS would make it -1. */
		FlushErrorState();
		la_restore(&saved);
		HOLD_INTERRUPTS();
	}
	PG_END_TRY();
	RESUME_INTERRUPTS();
}

/* Whether a message of this level reaches the server log or the client. */
bool
la_log_enabled(int level)
{
	return message_level_is_interesting(level);
}
