/*
 * columns.c - which columns of the extension's tables this database's
 * version has
 *
 * A database keeps the tables of the version it was created or last
 * updated at until ALTER EXTENSION UPDATE: the library serves every
 * version's tables, so each statement of the queue and the claims comes in
 * the shape of the columns found (catalog-checked, never assumed).  The
 * tables are the extension's own (found through pg_depend), so their
 * columns are the ones its scripts made.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/lsyscache.h"

#include "tables/la_tables.h"

/*
 * Whether lantern.task_owners has the column timeout (interval), which 0.3.0
 * added: a database still at 0.2.0 is served too, without per-task limits.
 * The table is the extension's own (found through pg_depend), so its
 * columns are the ones its scripts made.
 */
bool
la_queue_has_timeout(const LaCatalog *cat)
{
	AttrNumber	attnum = get_attnum(cat->task_owners, "timeout");

	return attnum != InvalidAttrNumber && get_atttype(cat->task_owners, attnum) == INTERVALOID;
}

/*
 * Whether lantern.task_owners has the column datid (oid), which 0.4.0
 * added: the database each task was submitted in.  Before the update a
 * database's tasks carry none, and its copies cannot be told apart.
 */
bool
la_queue_has_datid(const LaCatalog *cat)
{
	AttrNumber	attnum = get_attnum(cat->task_owners, "datid");

	return attnum != InvalidAttrNumber && get_atttype(cat->task_owners, attnum) == OIDOID;
}

/*
 * Whether lantern.task_owners has the column due (timestamptz), which
 * 0.5.0 added: the claims' queue, with the time each pending task may
 * start.  Before the update a database's tasks start at once, in jobid
 * order.
 */
bool
la_queue_has_due(const LaCatalog *cat)
{
	AttrNumber	attnum = get_attnum(cat->task_owners, "due");

	/* 0.5.0's other parts: retries, dependencies, attempts */
	return attnum != InvalidAttrNumber && get_atttype(cat->task_owners, attnum) == TIMESTAMPTZOID &&
		get_attnum(cat->task_owners, "depends") != InvalidAttrNumber &&
		OidIsValid(cat->task_attempts) && OidIsValid(cat->task_dependencies);
}

/*
 * The owner row's columns, each version's on top of the one before: 0.2.0
 * (none of these), 0.3.0 (timeout), 0.4.0 (datid), 0.5.0 (due).
 */
LaOwnerColumns
la_queue_columns(const LaCatalog *cat)
{
	LaOwnerColumns c = {la_queue_has_timeout(cat), false, false};

	c.datid = c.timeout && la_queue_has_datid(cat);
	c.due = c.datid && la_queue_has_due(cat);
	return c;
}
