-- privileges: what a role may not do to the queue (README "What is
-- trusted").  Rows enter only through async_task() and change only through
-- the extension's own code; a role sees its own tasks only; nothing can be
-- planted in schema lantern.  Nothing here ever starts (see README.md).
\set SHOW_CONTEXT never
\pset null '(null)'
SET ROLE bob;
SELECT lantern.async_task('SELECT 1');
SET ROLE alice;
SELECT lantern.async_task('SELECT 2');

SELECT jobid, username, status FROM lantern.tasks;
SELECT jobid, roleid::regrole FROM lantern.task_owners;
SELECT * FROM lantern.running_tasks();
SELECT * FROM lantern.task_progress;

INSERT INTO lantern.tasks (query) VALUES ('SELECT 3');
\echo :SQLSTATE
UPDATE lantern.tasks SET status = 'succeeded' WHERE jobid = 2;
\echo :SQLSTATE
DELETE FROM lantern.tasks;
\echo :SQLSTATE
INSERT INTO lantern.task_owners VALUES (1, 'alice'::regrole, NULL, 0);
\echo :SQLSTATE
INSERT INTO lantern.task_errors VALUES (2, '00000');
\echo :SQLSTATE
SELECT nextval('lantern.tasks_jobid_seq');
\echo :SQLSTATE
TRUNCATE lantern.tasks;
\echo :SQLSTATE
CREATE TABLE lantern.planted (a int);
\echo :SQLSTATE
CREATE FUNCTION lantern.planted() RETURNS int LANGUAGE sql AS 'SELECT 1';
\echo :SQLSTATE
ALTER TABLE lantern.tasks DISABLE ROW LEVEL SECURITY;
\echo :SQLSTATE
BEGIN;
LOCK TABLE lantern.tasks IN SHARE MODE;
\echo :SQLSTATE
ROLLBACK;

RESET ROLE;
SELECT jobid, username, status FROM lantern.tasks ORDER BY jobid;
