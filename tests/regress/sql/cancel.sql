-- cancel: lantern.cancel_task() and lantern.cancel_all_async_tasks() on
-- pending tasks (nothing here ever starts, see README.md).  cancel_task()
-- answers true for a task that will end canceled, false for one that does
-- not exist or has finished; another role's task is refused with an error
-- that names no one; the canceled row's shape; a rolled back cancel
-- cancels nothing; a row that async_task() did not queue is no task.
\set SHOW_CONTEXT never
\pset null '(null)'
SET ROLE alice;
SELECT lantern.async_task('SELECT 1', 'first');
SELECT lantern.async_task('SELECT 2', 'second');

SELECT lantern.cancel_task(1);
SELECT lantern.cancel_task(1);
SELECT lantern.cancel_task(1000);
SELECT lantern.cancel_task(0), lantern.cancel_task(-1);
SELECT lantern.cancel_task(NULL);
SELECT jobid, status, error_message, duration IS NOT NULL AS has_duration FROM lantern.tasks ORDER BY jobid;
SELECT * FROM lantern.task_errors;

BEGIN;
SELECT lantern.cancel_task(2);
ROLLBACK;
SELECT jobid, status FROM lantern.tasks WHERE jobid = 2;

-- Canceling a pending task writes; a finished one's answer needs no write.
BEGIN READ ONLY;
SELECT lantern.cancel_task(2);
\echo :SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT lantern.cancel_task(1);
COMMIT;
BEGIN READ ONLY;
SELECT lantern.cancel_all_async_tasks();
\echo :SQLSTATE
ROLLBACK;

-- Another role: pending or finished, the task is not bob's to cancel.
SET ROLE bob;
SELECT lantern.async_task('SELECT 3', 'bob''s');
SELECT lantern.cancel_task(2);
\echo :SQLSTATE
SELECT lantern.cancel_task(1);
\echo :SQLSTATE
-- A role's cancel_all_async_tasks() cancels its own tasks only.
SELECT lantern.cancel_all_async_tasks();
SELECT jobid, status FROM lantern.tasks ORDER BY jobid;
SET ROLE alice;
SELECT jobid, status FROM lantern.tasks ORDER BY jobid;
SELECT lantern.cancel_all_async_tasks();
RESET ROLE;
SELECT jobid, username, status, error_message FROM lantern.tasks ORDER BY jobid;
SELECT * FROM lantern.task_errors ORDER BY jobid;

-- A superuser's own INSERT is no task: the extension never runs or cancels
-- it; cancel_task() answers false to a superuser, and refuses the role named
-- in it, which did not submit it.
INSERT INTO lantern.tasks (query, username, status) VALUES ('SELECT 4', 'alice', NULL) RETURNING jobid;
SELECT lantern.cancel_task(4);
SET ROLE alice;
SELECT lantern.cancel_task(4);
\echo :SQLSTATE
SELECT lantern.cancel_all_async_tasks();
RESET ROLE;
SELECT jobid, status FROM lantern.tasks WHERE jobid = 4;

-- A superuser cancels every role's task.
SET ROLE bob;
SELECT lantern.async_task('SELECT 5');
RESET ROLE;
SELECT lantern.cancel_task(5);
SET ROLE alice;
SELECT lantern.async_task('SELECT 6');
RESET ROLE;
SELECT lantern.cancel_all_async_tasks();
SELECT jobid, username, status FROM lantern.tasks WHERE jobid > 4 ORDER BY jobid;
