-- lantern_async 0.5.0 -> 0.6.0: the claims' queue is vacuumed at the pace
-- of the claims, whatever the size of the history
\echo Use "ALTER EXTENSION lantern_async UPDATE TO '0.6.0'" to load this file. \quit

-- Bind nothing through the search_path (see lantern_async--0.6.0.sql).

-- Each claim leaves a dead entry in task_owners_due_idx until a vacuum of
-- task_owners removes it (see lantern_async--0.6.0.sql).
ALTER TABLE lantern.task_owners SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                                     vacuum_index_cleanup = on);
