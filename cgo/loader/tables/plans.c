/*
 * plans.c - the saved plans of the extension's hot statements
 *
 * Used by the statements of the queue (queue.c, enqueue.c,
 * dependencies.c) and of the claims (helpers/la_claim*.c).
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/memutils.h"

#include "tables/la_tables.h"

/*
 * Saved plans of the queue's hot statements, one per statement shape, for
 * the life of the process: a trivial task's claim and outcome otherwise
 * spent more time in the parser and planner than in the executor.
 *
 * A plan is used only for the text it was prepared from, which names the
 * tables as they are named now (catalog.c): after DROP and CREATE
 * EXTENSION, or a rename of the schema, the statement is prepared again
 * from the new text.  One that PostgreSQL has invalidated
 * meanwhile is prepared again too, rather than left to the plan cache,
 * which would analyze it again from its old text, resolving the old names
 * (as ri_triggers.c does for its own saved plans).  Should a name change
 * between here and the statement's run, sqlguard.c fails it.
 */
SPIPlanPtr
la_queue_plan(LaSavedPlan *saved, Oid relid, const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan;

	if (saved->plan != NULL && saved->relid == relid && strcmp(saved->sql, sql) == 0 &&
		SPI_plan_is_valid(saved->plan))
		return saved->plan;
	plan = SPI_prepare(sql, nargs, types);
	if (plan == NULL)
		elog(ERROR, "lantern_async could not prepare a queue statement: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "lantern_async could not keep a queue statement's plan");
	if (saved->plan != NULL)
	{
		SPI_freeplan(saved->plan);
		pfree(saved->sql);
	}
	saved->plan = plan;
	saved->sql = MemoryContextStrdup(TopMemoryContext, sql);
	saved->relid = relid;
	return plan;
}
