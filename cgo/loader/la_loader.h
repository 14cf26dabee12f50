/*
 * la_loader.h - functions private to the preloaded loader library
 */
#ifndef LA_LOADER_H
#define LA_LOADER_H

#include "la_shared.h"

extern void la_guc_define(void);
extern void la_shmem_install_hooks(void);
extern void la_dbguard_install_hook(void);
extern int	la_golib_run(const char *entry, int arg);

/* queue.c */
extern int	la_queue_execute(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, bool latest);
extern int64 la_queue_insert(const LaCatalog *cat, const char *query, const char *job_name,
							 const char *username, Oid roleid);

/* privilege.c: for the SQL functions, which need the extension installed */
extern void la_privileged_require(LaPrivileged *p);

#endif							/* LA_LOADER_H */
