-- lantern_async 0.1.0
\echo Use "CREATE EXTENSION lantern_async" to load this file. \quit

-- Schema lantern may already exist, owned by Lantern itself: create it only
-- when missing (CREATE SCHEMA IF NOT EXISTS refuses a schema that is not a
-- member of this extension).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'lantern') THEN
        CREATE SCHEMA lantern;
    END IF;
END
$$;

-- Defining a C function loads the library: without shared_preload_libraries
-- this fails here, with a hint saying how to configure it.
CREATE FUNCTION lantern.async_task(query text)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'lantern_async_task';

CREATE FUNCTION lantern.async_task(query text, job_name text)
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
    served text := pg_catalog.current_setting('lantern_async.database');
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
    query text NOT NULL,
    pg_cron_job_name text,
    job_name text,
    username text NOT NULL DEFAULT CURRENT_USER,
    started_at timestamp with time zone NOT NULL DEFAULT now(),
    duration interval,
    status text,
    error_message text,
    PRIMARY KEY (jobid)
);

-- The workers claim the oldest pending task of their role through this index.
CREATE INDEX tasks_pending_idx ON lantern.tasks (username, jobid) WHERE status = 'pending';

-- The SQLSTATE of each failed or canceled task, beside its error_message.
CREATE TABLE lantern.task_errors (
    jobid bigint PRIMARY KEY REFERENCES lantern.tasks (jobid) ON DELETE CASCADE,
    sqlstate text NOT NULL
);

-- Rows enter only through async_task (which records CURRENT_USER) and change
-- only through the workers; everybody reads their own rows.
REVOKE ALL ON lantern.tasks, lantern.task_errors, lantern.tasks_jobid_seq FROM PUBLIC;
GRANT USAGE ON SCHEMA lantern TO PUBLIC;
GRANT SELECT ON lantern.tasks, lantern.task_errors TO PUBLIC;
GRANT EXECUTE ON FUNCTION lantern.async_task(text), lantern.async_task(text, text),
    lantern.cancel_task(bigint), lantern.cancel_all_async_tasks() TO PUBLIC;

ALTER TABLE lantern.tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tasks_own_rows ON lantern.tasks FOR SELECT
    USING (username OPERATOR(pg_catalog.=) CURRENT_USER);

ALTER TABLE lantern.task_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_errors_own_rows ON lantern.task_errors FOR SELECT
    USING (EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid OPERATOR(pg_catalog.=) task_errors.jobid));

-- The queue is small and hot: vacuum it often.
ALTER TABLE lantern.tasks SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);

COMMENT ON TABLE lantern.tasks IS 'Background tasks submitted with lantern.async_task(); status: pending, running, succeeded, failed, canceled';
COMMENT ON FUNCTION lantern.async_task(text) IS 'Queue a query to run in the background as the current user; returns its jobid';
COMMENT ON FUNCTION lantern.async_task(text, text) IS 'Queue a query, with a job name, to run in the background as the current user; returns its jobid';
COMMENT ON FUNCTION lantern.cancel_task(bigint) IS 'Cancel a pending or running task; false when it does not exist or has finished';
COMMENT ON FUNCTION lantern.cancel_all_async_tasks() IS 'Cancel the caller''s unfinished tasks (a superuser''s: all)';
