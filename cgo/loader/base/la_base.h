/*
 * la_base.h - what every layer of the loader may use: the names of the
 * extension's libraries and processes, and the lantern_async.* settings
 * (guc.c)
 *
 * The loader (lantern_async.so) is built in layers, one folder each, and an
 * #include shows the direction of a call (README.md here): entry/ on top,
 * then functions/ and hooks/, then tables/, then state/, and base/ at the
 * bottom, which includes nothing of ours.
 *
 * The Go library, dlopen()ed later inside each background worker, reaches
 * the loader's functions through these headers; they resolve at dlopen
 * time because PostgreSQL loads lantern_async.so with RTLD_GLOBAL.  Every
 * function or variable the Go library uses is PGDLLEXPORT: since
 * PostgreSQL 16, PGXS builds with -fvisibility=hidden.
 */
#ifndef LA_BASE_H
#define LA_BASE_H

#include "postgres.h"

#define LA_LIBRARY_NAME "lantern_async"
#define LA_EXTENSION_NAME "lantern_async"
#define LA_GO_LIBRARY_FILE "lantern_async_go.so"
#define LA_LAUNCHER_TYPE "lantern_async launcher"
#define LA_WORKER_TYPE "lantern_async worker"
#define LA_SCOUT_TYPE "lantern_async scout"

/* GUCs (guc.c), defined by _PG_init before anything reads them */
extern PGDLLEXPORT char *la_database;
extern PGDLLEXPORT int la_max_workers;
extern PGDLLEXPORT int la_worker_idle_timeout;	/* milliseconds */
extern PGDLLEXPORT int la_history_retention;	/* seconds; 0: keep every finished task */
extern PGDLLEXPORT int la_task_timeout;	/* milliseconds, 0: none */

extern void la_guc_define(void);

#endif							/* LA_BASE_H */
