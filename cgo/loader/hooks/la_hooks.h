/*
 * la_hooks.h - the hooks/ layer: what the loader installs in PostgreSQL's
 * hooks at start (entry/loader.c)
 *
 *   dbguard.c   the utility hook: DROP/ALTER/CREATE DATABASE find our
 *               processes gone, and some commits note work for the launcher
 *   sqlguard.c  the post-parse-analysis hook: our statements use only our
 *               tables, and an update runs only in schema lantern
 *   fatal.c     an error context callback in a worker: a FATAL error during
 *               a task is the task's outcome
 *
 * They call down into tables/ and state/, never into functions/ or entry/.
 */
#ifndef LA_HOOKS_H
#define LA_HOOKS_H

#include "postgres.h"

#include "nodes/nodes.h"

#include "base/la_base.h"

/* The schema the extension's scripts name; an update runs only there (sqlguard.c). */
#define LA_SCHEMA_NAME "lantern"

extern void la_dbguard_install_hook(void);
extern void la_sqlguard_install_hook(void);
extern void la_sqlguard_check_utility(Node *stmt);
extern void la_fatal_install_hook(int slot);

#endif							/* LA_HOOKS_H */
