-- lantern_async 0.4.0 -> 0.5.0: tasks that wait for their time (run_after),
-- retry transient failures (retries) and follow one another (depends_on)
\echo Use "ALTER EXTENSION lantern_async UPDATE TO '0.5.0'" to load this file. \quit

-- Bind nothing through the search_path (see lantern_async--0.5.0.sql).

-- The three overloads become one function with defaults: the calls that
-- worked keep working, and named notation adds run_after.  (Beside the old
-- ones, async_task(q) would be ambiguous.)  Who may submit stays as it
-- was: an administrator who revoked EXECUTE on async_task(text) from PUBLIC
-- and granted it to some roles finds the same privileges on the new
-- function, not PUBLIC's default.
CREATE FUNCTION lantern.async_task(query pg_catalog.text,
                                   job_name pg_catalog.text DEFAULT NULL,
                                   timeout interval DEFAULT NULL,
                                   run_after timestamp with time zone DEFAULT NULL,
                                   retries integer DEFAULT 0,
                                   depends_on bigint[] DEFAULT NULL)
    RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'lantern_async_task';
GRANT EXECUTE ON FUNCTION lantern.async_task(pg_catalog.text, pg_catalog.text, interval, timestamp with time zone, integer, bigint[]) TO PUBLIC;
COMMENT ON FUNCTION lantern.async_task(pg_catalog.text, pg_catalog.text, interval, timestamp with time zone, integer, bigint[]) IS 'Queue a query to run in the background as the current user, with an optional job name, time limit, earliest start, retries and dependencies; returns its jobid';

DO $$
DECLARE
    old_acl pg_catalog.aclitem[];
    new_acl pg_catalog.aclitem[];
    g record;
BEGIN
    SELECT p.proacl INTO old_acl FROM pg_catalog.pg_proc p
    WHERE p.oid OPERATOR(pg_catalog.=) 'lantern.async_task(pg_catalog.text)'::pg_catalog.regprocedure;
    SELECT p.proacl INTO new_acl FROM pg_catalog.pg_proc p
    WHERE p.oid OPERATOR(pg_catalog.=) 'lantern.async_task(pg_catalog.text, pg_catalog.text, interval, timestamp with time zone, integer, bigint[])'::pg_catalog.regprocedure;
    IF old_acl IS NULL OR old_acl::pg_catalog.text OPERATOR(pg_catalog.=) new_acl::pg_catalog.text THEN
        RETURN;
    END IF;
    REVOKE ALL ON FUNCTION lantern.async_task(pg_catalog.text, pg_catalog.text, interval, timestamp with time zone, integer, bigint[]) FROM PUBLIC;
    FOR g IN
        SELECT a.grantee, a.is_grantable FROM pg_catalog.aclexplode(old_acl) a
        WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION lantern.async_task(pg_catalog.text, pg_catalog.text, interval, timestamp with time zone, integer, bigint[]) TO %s%s',
                                  CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                       ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
                                  CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

DROP FUNCTION lantern.async_task(pg_catalog.text);
DROP FUNCTION lantern.async_task(pg_catalog.text, pg_catalog.text);
DROP FUNCTION lantern.async_task(pg_catalog.text, pg_catalog.text, interval);

-- The claims' queue: due is set while a task is pending.  The tasks
-- pending now were due at their submit (started_at).  The tasks there are
-- have no retries, have had one attempt at most, and depend on nothing.
ALTER TABLE lantern.task_owners ADD COLUMN due timestamp with time zone,
    ADD COLUMN retries integer NOT NULL DEFAULT 0,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN depends boolean NOT NULL DEFAULT false;
UPDATE lantern.task_owners o SET due = t.started_at
FROM lantern.tasks t
WHERE t.jobid OPERATOR(pg_catalog.=) o.jobid AND t.status OPERATOR(pg_catalog.=) 'pending';
CREATE INDEX task_owners_due_idx ON lantern.task_owners (roleid, datid, due, jobid) WHERE due IS NOT NULL;
-- The claims walk task_owners_due_idx now; by jobid, only the primary key
-- may be used (see lantern_async--0.5.0.sql).
DROP INDEX lantern.task_owners_role_idx;
COMMENT ON TABLE lantern.task_owners IS 'The role (by OID) that submitted each task through lantern.async_task(), its time limit, the database (by OID) it was submitted in, while it is pending when it may start, and its retries, attempts and dependencies';

-- Each attempt of a task submitted with retries (see lantern_async--0.5.0.sql).
CREATE TABLE lantern.task_attempts (
    jobid bigint NOT NULL REFERENCES lantern.tasks (jobid) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration interval NOT NULL,
    sqlstate pg_catalog.text,
    error_message pg_catalog.text,
    PRIMARY KEY (jobid, attempt)
);

-- The tasks each task waits for (see lantern_async--0.5.0.sql).
CREATE TABLE lantern.task_dependencies (
    jobid bigint NOT NULL REFERENCES lantern.tasks (jobid) ON DELETE CASCADE,
    depends_on bigint NOT NULL,
    PRIMARY KEY (jobid, depends_on)
);
CREATE INDEX task_dependencies_depends_on_idx ON lantern.task_dependencies (depends_on);

REVOKE ALL ON lantern.task_attempts, lantern.task_dependencies FROM PUBLIC;
GRANT SELECT ON lantern.task_attempts, lantern.task_dependencies TO PUBLIC;

ALTER TABLE lantern.task_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_attempts_own_rows ON lantern.task_attempts FOR SELECT
    USING (EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid OPERATOR(pg_catalog.=) task_attempts.jobid));

ALTER TABLE lantern.task_dependencies ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_dependencies_own_rows ON lantern.task_dependencies FOR SELECT
    USING (EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid OPERATOR(pg_catalog.=) task_dependencies.jobid));

COMMENT ON TABLE lantern.task_attempts IS 'Each attempt of a task submitted with retries: start, duration, SQLSTATE and error';
COMMENT ON TABLE lantern.task_dependencies IS 'The tasks each task waits for (depends_on of lantern.async_task())';
