/*
 * la_loader.h - functions private to the preloaded loader library
 */
#ifndef LA_LOADER_H
#define LA_LOADER_H

extern void la_guc_define(void);
extern void la_shmem_install_hooks(void);
extern int	la_golib_run(const char *entry, int arg);

/* elevate.c */
typedef struct LaElevation
{
	Oid			caller;			/* CURRENT_USER of the SQL function's caller */
	int			saved_sec_context;
	int			nestlevel;
	Oid			tasks_relid;	/* the current lantern.tasks */
} LaElevation;

extern void la_elevate_begin(LaElevation *e);
extern void la_elevate_end(LaElevation *e);

#endif							/* LA_LOADER_H */
