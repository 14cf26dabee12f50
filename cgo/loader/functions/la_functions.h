/*
 * la_functions.h - the functions/ layer: the SQL-callable functions of the
 * extension (each file's PG_FUNCTION_INFO_V1), which PostgreSQL calls
 * through fmgr; this header holds only what they share among themselves
 *
 *   submit.c       lantern.async_task()
 *   cancel.c       lantern.cancel_task(), lantern.cancel_all_async_tasks()
 *   wait.c         lantern.wait_task(), with wait_caller.c
 *   progress.c     lantern.running_tasks()
 *
 * They call down into tables/ and state/, never into hooks/ or entry/.
 */
#ifndef LA_FUNCTIONS_H
#define LA_FUNCTIONS_H

#include "postgres.h"

#include "fmgr.h"

/* wait_caller.c */
extern void la_wait_require_nonatomic(FunctionCallInfo fcinfo);
extern void la_wait_require_nothing_to_commit(void);

#endif							/* LA_FUNCTIONS_H */
