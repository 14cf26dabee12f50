/*
 * la_entry.h - the entry/ layer: _PG_init and the background workers' main
 * functions (loader.c), and loading the Go library inside a worker
 * (golib.c)
 *
 * The top of the loader: it calls every layer below to set them up, and
 * nothing in the loader calls it.
 */
#ifndef LA_ENTRY_H
#define LA_ENTRY_H

#include "postgres.h"

#include "postmaster/bgworker.h"

#include "base/la_base.h"

/* Worker registration, shared by the launcher and the processes it starts (loader.c). */
extern PGDLLEXPORT void la_worker_describe(BackgroundWorker *worker, const char *function,
										   const char *type, const char *name,
										   int restart_time);

extern int	la_golib_run(const char *entry, int arg);

#endif							/* LA_ENTRY_H */
