-- lantern_async 0.3.0 -> 0.4.0
\echo Use "ALTER EXTENSION lantern_async UPDATE TO '0.4.0'" to load this file. \quit

-- What an earlier version bound by search_path is bound again, to
-- pg_catalog (see lantern_async--0.4.0.sql).  Only expressions whose
-- operator or function has no exact match in pg_catalog could have bound to
-- an object a database owner planted in the creator's schema, because
-- pg_catalog is searched first: of 0.1.0-0.3.0's objects, that is
-- task_progress's numeric * bigint and numeric / bigint.  The view is
-- replaced (CREATE OR REPLACE records its dependencies anew, and keeps its
-- grants, its comment and any view built on it).  The partial indexes'
-- status = 'pending' and IN (...), the policies and the column defaults
-- had exact matches in pg_catalog (or were qualified): already bound as a
-- fresh 0.4.0 binds them, as tests/bindings_test.go checks after updating
-- a database whose owner planted look-alikes first.

CREATE OR REPLACE VIEW lantern.task_progress WITH (security_invoker = true) AS
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

-- The database each task was submitted in (by OID): a task runs only
-- there, and the copies of its rows in a copied database end failed.
-- Tasks queued before the update belong to this database.  (A copy made
-- before the update cannot be told from its original: both keep their
-- rows.)
ALTER TABLE lantern.task_owners ADD COLUMN datid pg_catalog.oid;
UPDATE lantern.task_owners SET datid = (SELECT d.oid FROM pg_catalog.pg_database d
                                        WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database());
ALTER TABLE lantern.task_owners ALTER COLUMN datid SET NOT NULL;

COMMENT ON TABLE lantern.task_owners IS 'The role (by OID) that submitted each task through lantern.async_task(), its time limit, and the database (by OID) it was submitted in';

-- Last, as at the end of lantern_async--0.4.0.sql (see there): the
-- extension's namespace becomes pg_catalog, which no role can drop, instead
-- of the creator's first search_path schema, whose owner (or, for public,
-- the database's owner) could drop the extension and every role's tasks
-- with DROP SCHEMA ... CASCADE or DROP OWNED ... CASCADE.  ALTER EXTENSION
-- UPDATE has already written this row (extversion) before running this
-- script, and advances the command counter before each statement, so this
-- UPDATE changes that version of it (tests/extension_namespace_test.go).
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
