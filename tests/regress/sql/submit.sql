-- submit: lantern.async_task() as a user sees it.  It returns the jobid at
-- once and queues a pending row (nothing here ever starts: the test keeps
-- the server's only worker busy elsewhere, see README.md); its three
-- signatures; submitting is transactional; bad input is refused with an
-- SQLSTATE, and a refused call queues nothing.  Jobids are those of a fresh
-- database: 1, 2, ...
\set SHOW_CONTEXT never
\pset null '(null)'
SET ROLE alice;

SELECT lantern.async_task('SELECT 1');
SELECT lantern.async_task('SELECT 2', 'a name');
SELECT lantern.async_task('SELECT 3', 'with a time limit', '90 s');
SELECT lantern.async_task(query => 'SELECT 4', job_name => NULL, timeout => NULL);
-- job_name is free text for people; nothing about it is refused.
SELECT lantern.async_task('SELECT 5', '');

SELECT jobid, query, pg_cron_job_name, job_name, username, started_at <= now() AS started_at_submit,
       duration, status, error_message
FROM lantern.tasks ORDER BY jobid;
-- The submitting role by OID, the task's own time limit (NULL: the
-- lantern_async.task_timeout setting), the database it was submitted in.
SELECT jobid, roleid::regrole, timeout, datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AS this_database
FROM lantern.task_owners ORDER BY jobid;
SELECT * FROM lantern.task_errors;

-- Submitting is transactional: a rolled back submit queued nothing (its jobid is used up).
BEGIN;
SELECT lantern.async_task('SELECT 6');
ROLLBACK;
SELECT count(*) FROM lantern.tasks WHERE jobid = 6;

-- Bad input.
SELECT lantern.async_task(NULL);
\echo :SQLSTATE
SELECT lantern.async_task(NULL, 'a name');
\echo :SQLSTATE
SELECT lantern.async_task('');
\echo :SQLSTATE
SELECT lantern.async_task(E' \n\t\r ', 'a name');
\echo :SQLSTATE
-- A time limit of zero or less is refused, not read as "none".
SELECT lantern.async_task('SELECT 1', NULL, '0');
\echo :SQLSTATE
SELECT lantern.async_task('SELECT 1', NULL, '-1 s');
\echo :SQLSTATE
SELECT lantern.async_task('SELECT 1', NULL, '1 mon -30 days');
\echo :SQLSTATE
BEGIN READ ONLY;
SELECT lantern.async_task('SELECT 1');
\echo :SQLSTATE
ROLLBACK;
SELECT count(*) FROM lantern.tasks;

-- Jobids are positive (the workers' shared memory uses 0 for "no task"):
-- a sequence a superuser restarted at 0 is refused, with the fix in the hint.
RESET ROLE;
ALTER SEQUENCE lantern.tasks_jobid_seq MINVALUE 0 RESTART WITH 0;
SELECT lantern.async_task('SELECT 1');
\echo :SQLSTATE
ALTER SEQUENCE lantern.tasks_jobid_seq MINVALUE 1 RESTART WITH 7;
SELECT lantern.async_task('SELECT 7');
SELECT count(*) FROM lantern.tasks WHERE jobid < 1;
