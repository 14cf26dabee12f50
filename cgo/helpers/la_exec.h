/*
 * la_exec.h - what the files that run a task share, private to them:
 * la_exec.c runs the task's statements, la_exec_limit.c stops it at its
 * time limit, la_exec_finish.c ends it at its point of no return
 */
#ifndef LA_EXEC_H
#define LA_EXEC_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* The task being run, for the end of its last transaction. */
typedef struct LaRun
{
	bool		active;			/* a task runs (not the reset between tasks) */
	int			slot;
	int64		jobid;
	Oid			tasks_relid;
	bool		finishing;		/* past la_slot_begin_finishing() */
	bool		recorded;		/* its success is written in the open transaction */
	int64		limit_us;		/* how long it may run, 0: no limit */
	bool		limit_per_task; /* the limit is its own timeout, not lantern_async.task_timeout */
	int32		attempt;		/* > 0: its success goes in task_attempts */
	TimestampTz attempt_started;
	bool		committing;		/* the transaction committing now wrote something */
	bool		committed;		/* a transaction of the task committed work */
} LaRun;

extern LaRun la_run;

/* la_exec_limit.c */
extern void la_exec_clear_limit(void);
extern void la_exec_arm_limit(void);
extern bool la_exec_limit_passed(void);
extern void la_exec_disarm_limit(void);
extern void la_exec_limit_error(const char *context);
extern void la_exec_report_limit(void);

/* la_exec_commits.c */
extern void la_exec_watch_commits(void);

/* la_exec_finish.c */
extern void la_exec_finish_task(void);

#endif							/* LA_EXEC_H */
