-- lantern_async 0.2.0 -> 0.3.0
\echo Use "ALTER EXTENSION lantern_async UPDATE TO '0.3.0'" to load this file. \quit

-- lantern_async.history_retention deletes finished rows oldest first
-- through this index; the claims never read it.  (started_at is the submit
-- time: a row finished by a cutoff was submitted before it.)
CREATE INDEX tasks_finished_idx ON lantern.tasks (started_at)
    WHERE status IN ('succeeded', 'failed', 'canceled');

-- A per-task limit on how long the task may run (NULL: the worker session's
-- lantern_async.task_timeout, set per role, database or server).
ALTER TABLE lantern.task_owners ADD COLUMN timeout interval;

CREATE FUNCTION lantern.async_task(query text, job_name text, timeout interval)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'lantern_async_task';

-- A procedure, not a function: a function runs inside its caller's
-- statement, whose snapshot a CREATE INDEX CONCURRENTLY task would have to
-- wait for, so the task would stall until the waiter gave up.  CALLed
-- outside a transaction block, the procedure holds no snapshot while it
-- sleeps.  status is the task's status once it has finished, its current
-- status when timeout passes (NULL timeout: no limit), or NULL when the
-- caller cannot see the task.
CREATE PROCEDURE lantern.wait_task(jobid bigint, timeout interval, OUT status text)
    LANGUAGE C
    AS 'MODULE_PATHNAME', 'lantern_async_wait_task';

-- The tasks running in this database, from the workers' shared memory
-- (never from application_name, which a task or any session can set):
-- jobid, the worker's pid, and when the worker claimed it.
CREATE FUNCTION lantern.running_tasks()
    RETURNS TABLE (jobid bigint, pid integer, started timestamp with time zone)
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'lantern_async_running_tasks';

-- One row per running task the caller may see, with what PostgreSQL's
-- progress views report for its process (NULLs when the statement reports
-- no progress).  security_invoker: the caller's own row security applies.
CREATE VIEW lantern.task_progress WITH (security_invoker = true) AS
SELECT t.jobid, t.job_name, r.pid, p.command, p.phase, p.work_done, p.work_total,
       pg_catalog.round(100.0 * p.work_done / NULLIF(p.work_total, 0), 1) AS percent,
       pg_catalog.clock_timestamp() - r.started AS elapsed
FROM lantern.running_tasks() r
JOIN lantern.tasks t ON t.jobid OPERATOR(pg_catalog.=) r.jobid AND t.status OPERATOR(pg_catalog.=) 'running'
LEFT JOIN (
    SELECT c.pid, c.command, c.phase,
           CASE WHEN c.tuples_total > 0 THEN c.tuples_done ELSE c.blocks_done END AS work_done,
           CASE WHEN c.tuples_total > 0 THEN c.tuples_total ELSE c.blocks_total END AS work_total
    FROM pg_catalog.pg_stat_progress_create_index c
    UNION ALL
    SELECT v.pid, 'VACUUM', v.phase, v.heap_blks_scanned, v.heap_blks_total
    FROM pg_catalog.pg_stat_progress_vacuum v
    UNION ALL
    SELECT l.pid, l.command, l.phase, l.heap_blks_scanned, l.heap_blks_total
    FROM pg_catalog.pg_stat_progress_cluster l
    UNION ALL
    SELECT a.pid, 'ANALYZE', a.phase, a.sample_blks_scanned, a.sample_blks_total
    FROM pg_catalog.pg_stat_progress_analyze a
    UNION ALL
    SELECT y.pid, y.command, y.type, y.bytes_processed, NULLIF(y.bytes_total, 0)
    FROM pg_catalog.pg_stat_progress_copy y
) p ON p.pid OPERATOR(pg_catalog.=) r.pid;

GRANT EXECUTE ON FUNCTION lantern.async_task(text, text, interval), lantern.running_tasks() TO PUBLIC;
GRANT EXECUTE ON PROCEDURE lantern.wait_task(bigint, interval) TO PUBLIC;
GRANT SELECT ON lantern.task_progress TO PUBLIC;

COMMENT ON FUNCTION lantern.async_task(text, text, interval) IS 'Queue a query, with a job name and a time limit, to run in the background as the current user; returns its jobid';
COMMENT ON PROCEDURE lantern.wait_task(bigint, interval) IS 'Wait until a task has finished or timeout passes; its status, or NULL when the caller cannot see it';
COMMENT ON FUNCTION lantern.running_tasks() IS 'The tasks running in this database: jobid, worker pid, when it started';
COMMENT ON VIEW lantern.task_progress IS 'Progress of the running tasks the caller may see, from PostgreSQL''s progress views';
