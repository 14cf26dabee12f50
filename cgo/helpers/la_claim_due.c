/*
 * la_claim_due.c - the claim from 0.5.0 on: the oldest due task of the role
 *
 * From 0.5.0 on a pending task is in the claims' queue, task_owners.due:
 * the earliest it may start (its submit, or its run_after).  A claim walks
 * the role's entries of this database in (due, jobid) order, up to now,
 * and takes the first whose task is still pending and not locked; so tasks
 * waiting for their time cost it nothing, however many.  When nothing is
 * due, the earliest later time goes on the demand board (la_claim.c), for
 * the launcher to start work then.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "la_call.h"
#include "base/la_compat.h"
#include "tables/la_tables.h"

/*
 * The task's row is locked first (FOR UPDATE OF t), then its queue entry,
 * in the order every status change from pending takes them
 * (loader/tables/queue.c): a claim and a cancel of one task never
 * deadlock.  $3 is the claim's clock, not now(): a task submitted after
 * this transaction began is due as soon as its commit shows it.  A task
 * with dependencies (o.depends) is picked, and locked, but not claimed:
 * the sixth column says so, and la_claim_deps.c decides it.  An entry
 * whose task is no longer pending (one canceled while a dependency's end
 * queued it again: loader/tables/queue.c) is dropped from the queue: the
 * seventh column says so, and the claim picks again.
 */
char *
la_bk_claim_due_sql(const LaCatalog *cat)
{
	return psprintf("WITH pick AS ("
					"  SELECT t.jobid, o.depends, t.status FROM %s o JOIN %s t ON t.jobid = o.jobid "
					"  WHERE o.roleid = $1 AND o.datid = $2 AND o.due <= $3 "
	/* dropped (or, on 15, NOLOGIN) since this worker logged in: a scout fails its tasks */
					"    AND EXISTS (SELECT FROM pg_catalog.pg_authid r "
					"                WHERE r.oid = $1 AND " LA_ROLE_LOGIN_SQL ") "
					"  ORDER BY o.due, o.jobid LIMIT 1 FOR UPDATE OF t SKIP LOCKED), "
					"claimed AS ("
					"  UPDATE %s u SET status = 'running' FROM pick "
					"  WHERE u.jobid = pick.jobid AND pick.status = 'pending' AND NOT pick.depends "
					"  RETURNING u.jobid, u.query), "
					"unqueued AS ("
					"  UPDATE %s o SET due = NULL, attempts = o.attempts + 1 FROM claimed c "
					"  WHERE o.jobid = c.jobid RETURNING o.jobid, o.timeout, o.attempts, o.retries), "
					"dropped AS ("
					"  UPDATE %s o SET due = NULL, depends = false FROM pick "
					"  WHERE o.jobid = pick.jobid AND pick.status IS DISTINCT FROM 'pending') "
					"SELECT pick.jobid, c.query, q.timeout, q.attempts, q.retries, "
					"       pick.depends AND pick.status = 'pending', pick.status IS DISTINCT FROM 'pending' "
					"FROM pick LEFT JOIN claimed c ON c.jobid = pick.jobid "
					"LEFT JOIN unqueued q ON q.jobid = pick.jobid",
					cat->task_owners_name, cat->tasks_name, cat->tasks_name, cat->task_owners_name,
					cat->task_owners_name);
}

/*
 * The same claim, of a task with dependencies that a claim found all
 * succeeded (la_claim_deps.c): its row is locked by this transaction
 * already.  The same columns, depends false: it has none left to check.
 */
char *
la_bk_claim_ready_sql(const LaCatalog *cat)
{
	return psprintf("WITH claimed AS ("
					"  UPDATE %s u SET status = 'running' "
					"  WHERE u.jobid = $1 AND u.status = 'pending' RETURNING u.jobid, u.query), "
					"unqueued AS ("
					"  UPDATE %s o SET due = NULL, attempts = o.attempts + 1, depends = false FROM claimed c "
					"  WHERE o.jobid = c.jobid RETURNING o.jobid, o.timeout, o.attempts, o.retries) "
					"SELECT c.jobid, c.query, q.timeout, q.attempts, q.retries, false, false "
					"FROM claimed c JOIN unqueued q ON q.jobid = c.jobid",
					cat->tasks_name, cat->task_owners_name);
}

/*
 * When the role's next task in this database may start, if later than
 * now (0: none is waiting for its time).  A task due already but skipped
 * (locked by a claim or a cancel under way) does not count: its
 * transaction's end settles it, and counting it would start worker after
 * worker for a task none may take.
 */
TimestampTz
la_bk_next_due(const LaCatalog *cat, TimestampTz now)
{
	static LaSavedPlan plan;
	Oid			types[3] = {OIDOID, OIDOID, TIMESTAMPTZOID};
	Datum		values[3] = {ObjectIdGetDatum(GetAuthenticatedUserId()), ObjectIdGetDatum(MyDatabaseId),
	TimestampTzGetDatum(now)};
	bool		isnull;
	Datum		next;
	int			rc;

	rc = SPI_execute_plan(la_queue_plan_generic(&plan, cat->tasks,
												psprintf("SELECT min(o.due) FROM %s o "
														 "WHERE o.roleid = $1 AND o.datid = $2 AND o.due > $3",
														 cat->task_owners_name),
												3, types),
						  values, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "lantern_async could not read when the next task is due: %s",
			 SPI_result_code_string(rc));
	next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(next);
}
