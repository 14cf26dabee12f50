-- lantern_async 0.6.0
\echo Use "CREATE EXTENSION lantern_async" to load this file. \quit

-- Nothing here may bind to an object a database owner can plant.  This
-- script runs with search_path = <the creator's first schema>, pg_temp, and
-- pg_catalog searched first; an operator or function without an exact match
-- in pg_catalog (numeric * bigint, format(text, text)) would bind to an
-- exact one planted in that schema.  So every operator is written
-- OPERATOR(pg_catalog.x), every function pg_catalog.f(), every type that is
-- not a keyword pg_catalog.t, here and in the DO blocks (which run as the
-- installing superuser); NULLIF, IN and CASE x WHEN, which look up "=" by
-- search_path, are not used.  Functions written in SQL or PL/pgSQL would
-- need SET search_path = pg_catalog, pg_temp or a BEGIN ATOMIC body; there
-- are none (every function is C).  tests/bindings_test.go checks all of it
-- in pg_depend and in the stored expressions, in a database whose owner
-- planted look-alikes first.

-- Schema lantern may already exist, e.g. created by Lantern itself.  Reuse it
-- only when no ordinary role could tamper with what we put in it: a role
-- that owns it, or may create objects in it, could rename it and plant a
-- table of its own under our names.  (The C code finds the extension's own
-- objects through pg_depend, never by name, but refusing here keeps the
-- schema that users see trustworthy as well.)
DO $$
DECLARE
    nsp pg_catalog.oid;
    nsp_owner pg_catalog.oid;
    creator pg_catalog.text;
BEGIN
    SELECT n.oid, n.nspowner INTO nsp, nsp_owner FROM pg_catalog.pg_namespace n
    WHERE n.nspname OPERATOR(pg_catalog.=) 'lantern';
    IF NOT FOUND THEN
        CREATE SCHEMA lantern;
        RETURN;
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) nsp_owner) THEN
        RAISE EXCEPTION 'schema "lantern" already exists and is owned by role "%", which is not a superuser',
                pg_catalog.pg_get_userbyid(nsp_owner)
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'lantern_async keeps its task queue in schema "lantern"; the owner of that schema could replace the queue with objects of its own.',
                  HINT = 'Drop or rename schema "lantern", or make a superuser its owner, then run CREATE EXTENSION again.';
    END IF;
    SELECT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                ELSE pg_catalog.pg_get_userbyid(a.grantee) END INTO creator
    FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
    WHERE n.nspname OPERATOR(pg_catalog.=) 'lantern'
      AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
      AND NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) a.grantee), false)
    LIMIT 1;
    IF creator IS NOT NULL THEN
        RAISE EXCEPTION 'schema "lantern" already exists and % may create objects in it', creator
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'lantern_async keeps its task queue in schema "lantern"; a role that may create objects there could plant objects the queue would use.',
                  HINT = 'Drop or rename schema "lantern", or revoke CREATE on it from every role that is not a superuser, then run CREATE EXTENSION again.';
    END IF;
    SELECT pg_catalog.pg_get_userbyid(o.owner) INTO creator
    FROM (SELECT c.relowner AS owner FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) nsp
          UNION ALL SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) nsp
          UNION ALL SELECT t.typowner FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) nsp) o
    WHERE NOT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) o.owner), false)
    LIMIT 1;
    IF creator IS NOT NULL THEN
        RAISE EXCEPTION 'schema "lantern" already exists and holds objects owned by role "%", which is not a superuser', creator
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'lantern_async keeps its task queue in schema "lantern"; objects an ordinary role owns there could stand in for the extension''s own.',
                  HINT = 'Drop or rename schema "lantern", or drop those objects, then run CREATE EXTENSION again.';
    END IF;
END
$$;

-- Defining a C function loads the library: without shared_preload_libraries
-- this fails here, with a hint saying how to configure it.
-- One function, in positional or named notation: async_task(q),
-- async_task(q, name) and async_task(q, name, timeout) mean what they
-- meant when they were three.  run_after: not before then (NULL or a past
-- time: now).  retries: how many more attempts a transient failure may
-- have.  depends_on: tasks that must succeed first.
CREATE FUNCTION lantern.async_task(query pg_catalog.text,
                                   job_name pg_catalog.text DEFAULT NULL,
                                   timeout interval DEFAULT NULL,
                                   run_after timestamp with time zone DEFAULT NULL,
                                   retries integer DEFAULT 0,
                                   depends_on bigint[] DEFAULT NULL)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'lantern_async_task';

-- Same rule as pg_cancel_backend(): the task's role, a role with its
-- privileges, or a superuser. Returns false when the task does not exist or
-- has already finished.
CREATE FUNCTION lantern.cancel_task(jobid bigint)
    RETURNS boolean
    LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'lantern_async_cancel_task';

-- The caller's own unfinished tasks (a superuser's: everybody's).
CREATE FUNCTION lantern.cancel_all_async_tasks()
    RETURNS void
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'lantern_async_cancel_all_tasks';

DO $$
DECLARE
    served pg_catalog.text := pg_catalog.current_setting('lantern_async.database');
BEGIN
    IF pg_catalog.current_database() OPERATOR(pg_catalog.<>) served THEN
        RAISE EXCEPTION 'lantern_async can only be created in database "%"', served
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = pg_catalog.format('The background workers serve the database named by lantern_async.database, which is "%s".', served),
                  HINT = pg_catalog.format('Create the extension in database "%s", or set lantern_async.database = ''%s'' in postgresql.conf and restart the server.',
                                           served, pg_catalog.current_database());
    END IF;
END
$$;

CREATE TABLE lantern.tasks (
    jobid bigserial NOT NULL,
    query pg_catalog.text NOT NULL,
    pg_cron_job_name pg_catalog.text,
    job_name pg_catalog.text,
    username pg_catalog.text NOT NULL DEFAULT CURRENT_USER,
    started_at timestamp with time zone NOT NULL DEFAULT pg_catalog.now(),
    duration interval,
    status pg_catalog.text,
    error_message pg_catalog.text,
    PRIMARY KEY (jobid)
);

-- The workers claim the oldest pending task of their role through this index.
CREATE INDEX tasks_pending_idx ON lantern.tasks (jobid) WHERE status OPERATOR(pg_catalog.=) 'pending';

-- The SQLSTATE of each failed or canceled task, beside its error_message.
CREATE TABLE lantern.task_errors (
    jobid bigint PRIMARY KEY REFERENCES lantern.tasks (jobid) ON DELETE CASCADE,
    sqlstate pg_catalog.text NOT NULL
);

-- The role that submitted each task, by OID: names can be dropped and
-- re-created or swapped, a role's OID cannot.  Written only by async_task;
-- a row of lantern.tasks without one was not submitted through it and
-- never runs.  timeout: the task's own time limit (NULL: the worker
-- session's lantern_async.task_timeout, set per role, database or server).
-- datid: the database the task was submitted in (by OID); a copy of the
-- database (CREATE DATABASE ... TEMPLATE) holds copies of these rows, and
-- a task runs only where it was submitted: its copies end failed.  due:
-- set while the task is pending, the earliest it may start (its submit, or
-- its run_after); the workers claim the oldest due first, through
-- task_owners_due_idx, so tasks waiting for their time cost the claims
-- nothing.  Every change of a task's status from pending clears it; a task
-- waiting for its dependencies has none.  retries: how many attempts may
-- follow the first after a transient failure; attempts: how many its
-- workers have started.  depends: the task has dependencies, and the
-- claim checks them before it may run (cleared once all have succeeded).
CREATE TABLE lantern.task_owners (
    jobid bigint PRIMARY KEY REFERENCES lantern.tasks (jobid) ON DELETE CASCADE,
    roleid pg_catalog.oid NOT NULL,
    timeout interval,
    datid pg_catalog.oid NOT NULL,
    due timestamp with time zone,
    retries integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    depends boolean NOT NULL DEFAULT false
);
-- The only index that leads with roleid is the claims' queue: a statement
-- that finds owner rows by jobid can use only the primary key (with an
-- index on (roleid, jobid) beside it, a cancel of 100,000 tasks planned on
-- an empty table's statistics walked that whole index for each of them).
CREATE INDEX task_owners_due_idx ON lantern.task_owners (roleid, datid, due, jobid) WHERE due IS NOT NULL;

-- Each attempt of a task submitted with retries: when it started, how long
-- it ran, and how it ended (sqlstate and error_message NULL: succeeded).
CREATE TABLE lantern.task_attempts (
    jobid bigint NOT NULL REFERENCES lantern.tasks (jobid) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration interval NOT NULL,
    sqlstate pg_catalog.text,
    error_message pg_catalog.text,
    PRIMARY KEY (jobid, attempt)
);

-- The tasks each task waits for (depends_on).  No foreign key on
-- depends_on: a dependency deleted (lantern_async.history_retention) before
-- its dependent started must fail the dependent, not vanish from its list.
CREATE TABLE lantern.task_dependencies (
    jobid bigint NOT NULL REFERENCES lantern.tasks (jobid) ON DELETE CASCADE,
    depends_on bigint NOT NULL,
    PRIMARY KEY (jobid, depends_on)
);
-- A task's end finds its dependents through this index.
CREATE INDEX task_dependencies_depends_on_idx ON lantern.task_dependencies (depends_on);

-- Rows enter only through async_task (which records the caller's role) and
-- change only through the extension's own code; everybody reads their own
-- rows.
REVOKE ALL ON lantern.tasks, lantern.task_errors, lantern.task_owners, lantern.task_attempts,
    lantern.task_dependencies, lantern.tasks_jobid_seq FROM PUBLIC;
GRANT USAGE ON SCHEMA lantern TO PUBLIC;
GRANT SELECT ON lantern.tasks, lantern.task_errors, lantern.task_owners, lantern.task_attempts,
    lantern.task_dependencies TO PUBLIC;
GRANT EXECUTE ON FUNCTION lantern.async_task(pg_catalog.text, pg_catalog.text, interval, timestamp with time zone, integer, bigint[]),
    lantern.cancel_task(bigint), lantern.cancel_all_async_tasks() TO PUBLIC;

-- A role sees the tasks it submitted, followed by OID: a role renamed since
-- still sees them, a new role that took the old name does not.
ALTER TABLE lantern.task_owners ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_owners_own_rows ON lantern.task_owners FOR SELECT
    USING (roleid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r
                                          WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER));

ALTER TABLE lantern.tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tasks_own_rows ON lantern.tasks FOR SELECT
    USING (EXISTS (SELECT FROM lantern.task_owners o WHERE o.jobid OPERATOR(pg_catalog.=) tasks.jobid));

ALTER TABLE lantern.task_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_errors_own_rows ON lantern.task_errors FOR SELECT
    USING (EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid OPERATOR(pg_catalog.=) task_errors.jobid));

ALTER TABLE lantern.task_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_attempts_own_rows ON lantern.task_attempts FOR SELECT
    USING (EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid OPERATOR(pg_catalog.=) task_attempts.jobid));

ALTER TABLE lantern.task_dependencies ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_dependencies_own_rows ON lantern.task_dependencies FOR SELECT
    USING (EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid OPERATOR(pg_catalog.=) task_dependencies.jobid));

-- The queue is small and hot: vacuum it often.
ALTER TABLE lantern.tasks SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);

-- The claims' queue (task_owners_due_idx) is in a table as large as the
-- history: each claim leaves a dead entry in it, and a claim walks every
-- dead entry of its role ahead of the first live one (200,000 of them: 3 ms
-- a claim) until a vacuum removes them.  Vacuum it after a fixed number of
-- changes, not a fraction of the history (by default 20 %: 2,000,000
-- claims with 10,000,000 finished rows), and always its indexes too (by
-- default a vacuum that found dead rows on under 2 % of the pages leaves
-- the indexes as they are).
ALTER TABLE lantern.task_owners SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                                     vacuum_index_cleanup = on);

COMMENT ON TABLE lantern.task_owners IS 'The role (by OID) that submitted each task through lantern.async_task(), its time limit, the database (by OID) it was submitted in, while it is pending when it may start, and its retries, attempts and dependencies';
COMMENT ON TABLE lantern.task_attempts IS 'Each attempt of a task submitted with retries: start, duration, SQLSTATE and error';
COMMENT ON TABLE lantern.task_dependencies IS 'The tasks each task waits for (depends_on of lantern.async_task())';
COMMENT ON TABLE lantern.tasks IS 'Background tasks submitted with lantern.async_task(); status: pending, running, succeeded, failed, canceled';
COMMENT ON FUNCTION lantern.async_task(pg_catalog.text, pg_catalog.text, interval, timestamp with time zone, integer, bigint[]) IS 'Queue a query to run in the background as the current user, with an optional job name, time limit, earliest start, retries and dependencies; returns its jobid';
COMMENT ON FUNCTION lantern.cancel_task(bigint) IS 'Cancel a pending or running task; false when it does not exist or has finished';
COMMENT ON FUNCTION lantern.cancel_all_async_tasks() IS 'Cancel the caller''s unfinished tasks (a superuser''s: all)';

-- lantern_async.history_retention deletes finished rows oldest first
-- through this index; the claims never read it.  (started_at is the submit
-- time: a row finished by a cutoff was submitted before it.)
CREATE INDEX tasks_finished_idx ON lantern.tasks (started_at)
    WHERE status OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed', 'canceled']);

-- A procedure, not a function: a function runs inside its caller's
-- statement, whose snapshot a CREATE INDEX CONCURRENTLY task would have to
-- wait for, so the task would stall until the waiter gave up.  CALLed
-- outside a transaction block, the procedure holds no snapshot while it
-- sleeps.  status is the task's status once it has finished, its current
-- status when timeout passes (NULL timeout: no limit), or NULL when the
-- caller cannot see the task.
CREATE PROCEDURE lantern.wait_task(jobid bigint, timeout interval, OUT status pg_catalog.text)
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
       pg_catalog.round(100.0 OPERATOR(pg_catalog.*) p.work_done OPERATOR(pg_catalog./)
                        CASE WHEN p.work_total OPERATOR(pg_catalog.<>) 0 THEN p.work_total END, 1) AS percent,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) r.started AS elapsed
FROM lantern.running_tasks() r
JOIN lantern.tasks t ON t.jobid OPERATOR(pg_catalog.=) r.jobid AND t.status OPERATOR(pg_catalog.=) 'running'
LEFT JOIN (
    SELECT c.pid, c.command, c.phase,
           CASE WHEN c.tuples_total OPERATOR(pg_catalog.>) 0 THEN c.tuples_done ELSE c.blocks_done END AS work_done,
           CASE WHEN c.tuples_total OPERATOR(pg_catalog.>) 0 THEN c.tuples_total ELSE c.blocks_total END AS work_total
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
    SELECT y.pid, y.command, y.type, y.bytes_processed,
           CASE WHEN y.bytes_total OPERATOR(pg_catalog.<>) 0 THEN y.bytes_total END
    FROM pg_catalog.pg_stat_progress_copy y
) p ON p.pid OPERATOR(pg_catalog.=) r.pid;

GRANT EXECUTE ON FUNCTION lantern.running_tasks() TO PUBLIC;
GRANT EXECUTE ON PROCEDURE lantern.wait_task(bigint, interval) TO PUBLIC;
GRANT SELECT ON lantern.task_progress TO PUBLIC;

COMMENT ON PROCEDURE lantern.wait_task(bigint, interval) IS 'Wait until a task has finished or timeout passes; its status, or NULL when the caller cannot see it';
COMMENT ON FUNCTION lantern.running_tasks() IS 'The tasks running in this database: jobid, worker pid, when it started';
COMMENT ON VIEW lantern.task_progress IS 'Progress of the running tasks the caller may see, from PostgreSQL''s progress views';

-- Last, the extension's namespace (pg_extension.extnamespace) becomes
-- pg_catalog, which no role can drop; its objects stay in schema lantern.
-- CREATE EXTENSION made it the creator's first search_path schema (public,
-- or one named after the creator) or the one its SCHEMA clause named, and
-- recorded that the extension depends on it: whoever could drop that schema
-- (its owner; for public, the database's owner) would drop the extension
-- and every role's tasks with DROP SCHEMA ... CASCADE or DROP OWNED ...
-- CASCADE.  pg_catalog is pinned, so no dependency on it is recorded: the
-- one on the old schema is deleted.  CREATE EXTENSION inserted both rows
-- before running this script, and advances the command counter before each
-- statement, so these statements see them.  (A "schema = pg_catalog" line
-- in lantern_async.control would do the same, but for every version: an
-- install of 0.1.0-0.3.0 could no longer be made as it was, under the
-- creator's search_path, which tests/bindings_test.go updates from.)  The
-- update from 0.3.0 does the same (tests/extension_namespace_test.go).
DELETE FROM pg_catalog.pg_depend d
USING pg_catalog.pg_extension e
WHERE e.extname OPERATOR(pg_catalog.=) 'lantern_async'
  AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
  AND d.objid OPERATOR(pg_catalog.=) e.oid
  AND d.objsubid OPERATOR(pg_catalog.=) 0
  AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
  AND d.deptype OPERATOR(pg_catalog.=) 'n';
UPDATE pg_catalog.pg_extension
SET extnamespace = 'pg_catalog'::pg_catalog.regnamespace
WHERE extname OPERATOR(pg_catalog.=) 'lantern_async';
