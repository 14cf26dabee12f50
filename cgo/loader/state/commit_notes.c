/*
 * commit_notes.c - work this transaction queued, noted on the demand board
 * when it commits, never before: only then are the rows durable and
 * visible to a worker
 *
 * A submit queues tasks (functions/submit.c); a final status puts the
 * tasks waiting for it back in the queue (tables/dependencies.c).  An
 * aborted transaction queued nothing; a prepared one is noted when COMMIT
 * PREPARED commits (a scout, hooks/dbguard.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"

#include "state/la_state.h"

/*
 * Per role (SET ROLE between submits gives several).  Beyond
 * LA_NOTED_ROLES roles the commit asks for a scout of the database
 * instead, which finds them all.
 */
#define LA_NOTED_ROLES 8

typedef struct LaNoted
{
	Oid			roleid;
	int64		ntasks;
	TimestampTz due;			/* the earliest any of them may start; 0: now */
} LaNoted;

static LaNoted la_noted[LA_NOTED_ROLES];
static int	la_nnoted = 0;
static bool la_noted_overflow = false;

static void
la_commit_notes_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			for (int i = 0; i < la_nnoted; i++)
				la_demand_note_at(MyDatabaseId, la_noted[i].roleid, la_noted[i].ntasks, la_noted[i].due);
			if (la_noted_overflow)
				la_demand_note(MyDatabaseId, InvalidOid, 0);
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			la_nnoted = 0;
			la_noted_overflow = false;
			break;
		default:
			break;
	}
}

/* One more task of roleid queued in this transaction, due then (0: now). */
void
la_demand_note_at_commit(Oid roleid, TimestampTz due)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(la_commit_notes_callback, NULL);
		registered = true;
	}
	for (int i = 0; i < la_nnoted; i++)
		if (la_noted[i].roleid == roleid)
		{
			la_noted[i].ntasks++;
			la_noted[i].due = Min(la_noted[i].due, due);
			return;
		}
	if (la_nnoted == LA_NOTED_ROLES)
	{
		la_noted_overflow = true;
		return;
	}
	la_noted[la_nnoted].roleid = roleid;
	la_noted[la_nnoted].ntasks = 1;
	la_noted[la_nnoted].due = due;
	la_nnoted++;
}
