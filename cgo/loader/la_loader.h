/*
 * la_loader.h - functions private to the preloaded loader library
 */
#ifndef LA_LOADER_H
#define LA_LOADER_H

extern void la_guc_define(void);
extern void la_shmem_install_hooks(void);
extern int	la_golib_run(const char *entry, int arg);

#endif							/* LA_LOADER_H */
