-- lantern_async 0.1.0 -> 0.2.0
\echo Use "ALTER EXTENSION lantern_async UPDATE TO '0.2.0'" to load this file. \quit

-- 0.1.0 reused any pre-existing schema lantern: refuse to go on with one
-- that an ordinary role controls (see lantern_async--0.2.0.sql).
DO $$
DECLARE
    nsp oid;
    nsp_owner oid;
    creator text;
BEGIN
    SELECT n.oid, n.nspowner INTO nsp, nsp_owner FROM pg_catalog.pg_namespace n
    WHERE n.nspname OPERATOR(pg_catalog.=) 'lantern';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schema "lantern" of extension lantern_async does not exist';
    END IF;
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) nsp_owner) THEN
        RAISE EXCEPTION 'schema "lantern" already exists and is owned by role "%", which is not a superuser',
                pg_catalog.pg_get_userbyid(nsp_owner)
            USING ERRCODE = 'duplicate_schema',
                  DETAIL = 'lantern_async keeps its task queue in schema "lantern"; the owner of that schema could replace the queue with objects of its own.',
                  HINT = 'Drop or rename schema "lantern", or make a superuser its owner, then run ALTER EXTENSION lantern_async UPDATE again.';
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
                  HINT = 'Drop or rename schema "lantern", or revoke CREATE on it from every role that is not a superuser, then run ALTER EXTENSION lantern_async UPDATE again.';
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
                  HINT = 'Drop or rename schema "lantern", or drop those objects, then run ALTER EXTENSION lantern_async UPDATE again.';
    END IF;
END
$$;

-- The claim index no longer needs the role's name: claims follow
-- lantern.task_owners.
DROP INDEX lantern.tasks_pending_idx;
CREATE INDEX tasks_pending_idx ON lantern.tasks (jobid) WHERE status = 'pending';

-- The role that submitted each task, by OID: names can be dropped and
-- re-created or swapped, a role's OID cannot.  Written only by async_task;
-- a row of lantern.tasks without one was not submitted through it and
-- never runs.
CREATE TABLE lantern.task_owners (
    jobid bigint PRIMARY KEY REFERENCES lantern.tasks (jobid) ON DELETE CASCADE,
    roleid oid NOT NULL
);
CREATE INDEX task_owners_role_idx ON lantern.task_owners (roleid, jobid);

-- 0.1.0 recorded only the submitter's name: its tasks belong to the role
-- that has that name now.  A task whose role no longer exists gets no
-- owner: if still pending, it is failed instead of run.
INSERT INTO lantern.task_owners (jobid, roleid)
SELECT t.jobid, r.oid
FROM lantern.tasks t JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) t.username;

REVOKE ALL ON lantern.task_owners FROM PUBLIC;
GRANT SELECT ON lantern.task_owners TO PUBLIC;

-- A role sees the tasks it submitted, followed by OID.
ALTER TABLE lantern.task_owners ENABLE ROW LEVEL SECURITY;
CREATE POLICY task_owners_own_rows ON lantern.task_owners FOR SELECT
    USING (roleid OPERATOR(pg_catalog.=) (SELECT r.oid FROM pg_catalog.pg_roles r
                                          WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER));

DROP POLICY tasks_own_rows ON lantern.tasks;
CREATE POLICY tasks_own_rows ON lantern.tasks FOR SELECT
    USING (EXISTS (SELECT FROM lantern.task_owners o WHERE o.jobid OPERATOR(pg_catalog.=) tasks.jobid));

COMMENT ON TABLE lantern.task_owners IS 'The role (by OID) that submitted each task through lantern.async_task()';
