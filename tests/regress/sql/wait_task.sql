-- wait_task: CALL lantern.wait_task(jobid, timeout, NULL) on tasks that
-- never start here (see README.md).  It returns the current status when
-- the timeout passes ('0' looks once), the final one once the task has
-- finished, and NULL for a task the caller cannot see; and it refuses,
-- with its reasons, to run where its commit would end the caller's
-- transaction or work (README "Wait").
\set SHOW_CONTEXT never
\pset null '(null)'
SET ROLE alice;
SELECT lantern.async_task('SELECT 1');

CALL lantern.wait_task(1, '0', NULL);
CALL lantern.wait_task(1, '10 ms', NULL);
SELECT lantern.cancel_task(1);
CALL lantern.wait_task(1, NULL, NULL);
CALL lantern.wait_task(1000, '0', NULL);
CALL lantern.wait_task(NULL, '0', NULL);
SET ROLE bob;
CALL lantern.wait_task(1, '0', NULL);
SET ROLE alice;

CALL lantern.wait_task(1, '-1 s', NULL);
\echo :SQLSTATE
CALL lantern.wait_task(1, '1 year -400 days', NULL);
\echo :SQLSTATE

-- Where it may not commit: a transaction block, a function, a PL/pgSQL
-- block with an EXCEPTION clause.
BEGIN;
CALL lantern.wait_task(1, '0', NULL);
\echo :SQLSTATE
ROLLBACK;
CREATE FUNCTION pg_temp.wait_in_a_function() RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
    CALL lantern.wait_task(1, '0', s);
    RETURN s;
END $$;
SELECT pg_temp.wait_in_a_function();
\echo :SQLSTATE
DO $$
DECLARE s text;
BEGIN
    CALL lantern.wait_task(1, '0', s);
EXCEPTION WHEN division_by_zero THEN NULL;
END $$;
\echo :SQLSTATE

-- Where its commit would take the caller's work with it: writes, a SET
-- LOCAL, an open cursor.
CREATE TEMP TABLE audit (note text);
DO $$
DECLARE s text;
BEGIN
    INSERT INTO audit VALUES ('waiting for task 1');
    CALL lantern.wait_task(1, '0', s);
END $$;
\echo :SQLSTATE
SELECT count(*) FROM audit;
DO $$
DECLARE s text;
BEGIN
    SET LOCAL work_mem = '7MB';
    CALL lantern.wait_task(1, '0', s);
END $$;
\echo :SQLSTATE
DO $$
DECLARE
    s text;
    c refcursor := 'c';  -- named: a bound cursor's portal is "c" on 15, unnamed on 17
BEGIN
    OPEN c FOR SELECT 1;
    CALL lantern.wait_task(1, '0', s);
END $$;
\echo :SQLSTATE

-- In a DO block of its own it runs, and so does a FOR loop's query around it.
DO $$
DECLARE s text;
BEGIN
    CALL lantern.wait_task(1, '0', s);
    RAISE NOTICE 'task 1: %', s;
END $$;
DO $$
DECLARE
    s text;
    r record;
BEGIN
    FOR r IN SELECT jobid FROM lantern.tasks LOOP
        CALL lantern.wait_task(r.jobid, '0', s);
        RAISE NOTICE 'task %: %', r.jobid, s;
    END LOOP;
END $$;
