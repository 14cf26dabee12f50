-- structure: the public contract as psql shows it.  The table lantern.tasks
-- exactly as README "SQL API" lists it, the extension's other tables, its
-- functions and procedure with their signatures, and what every role
-- (PUBLIC) is granted.  A change here is a change for users.

-- The extension itself is listed in pg_catalog, which no role can drop;
-- its objects are in schema lantern (README "Setup").
\dx lantern_async

\d lantern.tasks
\d lantern.tasks_jobid_seq
\d lantern.task_errors
\d lantern.task_owners
\d lantern.task_progress

\df lantern.*

-- What PUBLIC, that is every role, is granted (the sequence: nothing).
SELECT 'schema lantern' AS object, a.privilege_type
FROM pg_namespace n, aclexplode(n.nspacl) a
WHERE n.nspname = 'lantern' AND a.grantee = 0
UNION ALL
SELECT c.oid::regclass::text, a.privilege_type
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.relnamespace = 'lantern'::regnamespace AND a.grantee = 0
UNION ALL
SELECT p.oid::regprocedure::text, a.privilege_type
FROM pg_proc p, aclexplode(p.proacl) a
WHERE p.pronamespace = 'lantern'::regnamespace AND a.grantee = 0
ORDER BY 1, 2;
