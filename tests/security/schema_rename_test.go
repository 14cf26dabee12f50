package security

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// A renamed schema: the bookkeeping must never resolve a
// name it did not just derive from the extension's own OIDs. The attack:
// a session (or a warm worker) uses the extension once, so that it has the
// tables' names and its saved plans; an administrator runs ALTER SCHEMA
// lantern RENAME TO lantern_real; eve, who may create schemas in the
// database, makes her own schema lantern with look-alikes of tasks,
// task_owners and task_errors (views that call her function). The next
// call through lantern_real must use the extension's own tables: eve's
// function never runs (as the bootstrap superuser it would make her one),
// and everything keeps working under the new name.
//
// Each case runs in a database of its own (testkit.NewExtensionDatabase), dropped
// at the end, so the shared database's schema is never renamed.

const renamedSchema = "lantern_real"

// renameScene is one case's database, a superuser session in it and eve.
type renameScene struct {
	db  string
	su  *pgx.Conn
	eve string
	// eveSchema is where eve's objects are: lantern, unless a test renamed it.
	eveSchema string
}

// newRenameScene makes eve (before the database: her DROP ROLE must come
// after the DROP DATABASE that removes her objects) and the database, where
// eve may create schemas.
func newRenameScene(t *testing.T) *renameScene {
	t.Helper()
	su0 := testkit.Connect(t, testkit.Superuser)
	eve := testkit.NewTempRole(t, su0, "eve")
	db := testkit.NewExtensionDatabase(t, su0, "renamed")
	testkit.MustExec(t, su0, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", db, eve))
	return &renameScene{db: db, su: testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser), eve: eve, eveSchema: "lantern"}
}

// plantRenameSQL is what eve runs: her schema lantern, with views named like the
// extension's tables over tables of her own (rows for jobids 1 to 1000, so
// that a lookup by jobid finds one), security_barrier so that her function
// runs before anyone's WHERE that is not leakproof, and a check option so
// that an INSERT calls it too. An IMMUTABLE function in the same WHERE runs
// whenever a statement on a view is planned, whatever rows it reads. Both
// count their calls in a sequence (kept whatever the caller's transaction
// does); the volatile one notes who called it and tries to make eve a
// superuser.
func plantRenameSQL(eve string) string {
	return fmt.Sprintf(`
CREATE SCHEMA lantern;
GRANT USAGE ON SCHEMA lantern TO PUBLIC;
CREATE SEQUENCE lantern.hits;
CREATE TABLE lantern.spied (usr name, super bool);
CREATE FUNCTION lantern.spy() RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  PERFORM nextval('lantern.hits');
  INSERT INTO lantern.spied SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user;
  BEGIN
    EXECUTE format('ALTER ROLE %%I SUPERUSER', %s);
  EXCEPTION WHEN others THEN NULL;
  END;
  RETURN true;
END $f$;
CREATE FUNCTION lantern.spy_planned() RETURNS boolean LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  PERFORM nextval('lantern.hits');
  RETURN true;
END $f$;
CREATE TABLE lantern.t_tasks (jobid bigserial, query text, pg_cron_job_name text, job_name text,
  username text DEFAULT CURRENT_USER, started_at timestamptz DEFAULT now(), duration interval,
  status text, error_message text);
CREATE TABLE lantern.t_owners (jobid bigint, roleid oid, timeout interval);
CREATE TABLE lantern.t_errors (jobid bigint, sqlstate text);
INSERT INTO lantern.t_tasks (jobid, query, username, status)
  SELECT g, 'SELECT 1', 'alice', 'pending' FROM generate_series(1, 1000) g;
INSERT INTO lantern.t_owners SELECT jobid, 'alice'::regrole, NULL FROM lantern.t_tasks;
INSERT INTO lantern.t_errors SELECT jobid, '00000' FROM lantern.t_tasks;
CREATE VIEW lantern.tasks WITH (security_barrier) AS
  SELECT * FROM lantern.t_tasks WHERE lantern.spy_planned() AND lantern.spy() WITH CASCADED CHECK OPTION;
CREATE VIEW lantern.task_owners WITH (security_barrier) AS
  SELECT * FROM lantern.t_owners WHERE lantern.spy_planned() AND lantern.spy() WITH CASCADED CHECK OPTION;
CREATE VIEW lantern.task_errors WITH (security_barrier) AS
  SELECT * FROM lantern.t_errors WHERE lantern.spy_planned() AND lantern.spy() WITH CASCADED CHECK OPTION;
GRANT ALL ON ALL TABLES IN SCHEMA lantern TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA lantern TO PUBLIC;`, testkit.Lit(eve))
}

// renameAndPlant is the administrator's rename and eve's look-alikes.
func (s *renameScene) renameAndPlant(t *testing.T) {
	t.Helper()
	testkit.MustExec(t, s.su, "ALTER SCHEMA lantern RENAME TO "+renamedSchema)
	eve := testkit.ConnectTo(t, testkit.Cluster, s.db, s.eve)
	testkit.MustExec(t, eve, plantRenameSQL(s.eve))
	testkit.CloseConn(t, eve)
}

// spied reports whether eve's function ever ran, and who ran it.
func (s *renameScene) spied(t *testing.T) (bool, string) {
	t.Helper()
	hit := testkit.QueryOne[bool](t, s.su, "SELECT is_called FROM "+s.eveSchema+".hits")
	who := testkit.QueryOne[string](t, s.su,
		`SELECT count(*) || ' committed calls, by ' ||
		   coalesce(string_agg(DISTINCT usr || CASE WHEN super THEN ' (superuser)' ELSE '' END, ', '), 'nobody')
		 FROM `+s.eveSchema+`.spied`)
	return hit, who
}

// requireNotHijacked: eve's function never ran and eve is no superuser.
func (s *renameScene) requireNotHijacked(t *testing.T) {
	t.Helper()
	hit, who := s.spied(t)
	require.False(t, hit, "eve's function ran (%s): the bookkeeping used her look-alike of the extension's tables", who)
	require.False(t, testkit.QueryOne[bool](t, s.su, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", s.eve),
		"eve became a superuser")
}

// renamedTask is a task's status in the renamed schema ("" when there is no such row).
func (s *renameScene) renamedTask(jobid int64) (string, error) {
	var st *string
	err := s.su.QueryRow(context.Background(),
		"SELECT status FROM "+renamedSchema+".tasks WHERE jobid = $1", jobid).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return testkit.Deref(st), err
}

// waitRenamedTask waits until the task has status want in the renamed
// schema, or eve's function ran (then the test fails at once instead of
// waiting for a task that will never get there).
func (s *renameScene) waitRenamedTask(t *testing.T, jobid int64, want func(string) bool, what string) string {
	t.Helper()
	var status string
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("task %d %s in %s.tasks", jobid, what, renamedSchema),
		testkit.WhileConnected(s.su, func() (bool, string) {
			var err error
			status, err = s.renamedTask(jobid)
			if err != nil {
				return false, err.Error()
			}
			var hit bool
			if err := s.su.QueryRow(context.Background(), "SELECT is_called FROM "+s.eveSchema+".hits").Scan(&hit); err == nil && hit {
				return true, "eve's function ran"
			}
			return want(status), "status " + status
		}))
	s.requireNotHijacked(t)
	return status
}

// submitFresh queues query through schema's async_task as role in db, on a
// fresh session (one that never used the extension before the rename), and
// closes it.
func (s *renameScene) submitFresh(t *testing.T, role, schema, query string) int64 {
	t.Helper()
	conn := testkit.ConnectTo(t, testkit.Cluster, s.db, role)
	defer testkit.CloseConn(t, conn)
	var id int64
	require.NoError(t, conn.QueryRow(testkit.Ctx(t), "SELECT "+schema+".async_task($1)", query).Scan(&id))
	return id
}

func isRunning(status string) bool { return status == "running" }

func TestSchemaRenameClientSession(t *testing.T) {
	t.Run("cancel_task", func(t *testing.T) {
		testkit.Begin(t)
		s := newRenameScene(t)
		alice := testkit.ConnectTo(t, testkit.Cluster, s.db, "alice")
		require.False(t, testkit.QueryOne[bool](t, alice, "SELECT lantern.cancel_task(0)"))
		s.renameAndPlant(t)

		jobid := s.submitFresh(t, "alice", renamedSchema, "SELECT pg_sleep(60)")
		s.waitRenamedTask(t, jobid, isRunning, "running")
		canceled := testkit.QueryOne[*bool](t, alice, "SELECT "+renamedSchema+".cancel_task($1)", jobid)
		s.requireNotHijacked(t)
		require.True(t, testkit.Deref(canceled), "cancel_task of a running task")
		require.Equal(t, "canceled", s.waitRenamedTask(t, jobid, testkit.IsFinal, "final"))
	})

	t.Run("cancel_all_async_tasks", func(t *testing.T) {
		testkit.Begin(t)
		s := newRenameScene(t)
		alice := testkit.ConnectTo(t, testkit.Cluster, s.db, "alice")
		testkit.MustExec(t, alice, "SELECT lantern.cancel_all_async_tasks()")
		s.renameAndPlant(t)

		jobid := s.submitFresh(t, "alice", renamedSchema, "SELECT pg_sleep(60)")
		s.waitRenamedTask(t, jobid, isRunning, "running")
		_, err := alice.Exec(testkit.Ctx(t), "SELECT "+renamedSchema+".cancel_all_async_tasks()")
		s.requireNotHijacked(t)
		require.NoError(t, err)
		require.Equal(t, "canceled", s.waitRenamedTask(t, jobid, testkit.IsFinal, "final"))
	})

	t.Run("async_task", func(t *testing.T) {
		testkit.Begin(t)
		s := newRenameScene(t)
		alice := testkit.ConnectTo(t, testkit.Cluster, s.db, "alice")
		testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))
		s.renameAndPlant(t)

		var jobid int64
		err := alice.QueryRow(testkit.Ctx(t), "SELECT "+renamedSchema+".async_task($1)", testkit.TraceSQL).Scan(&jobid)
		s.requireNotHijacked(t)
		require.NoError(t, err)
		require.Equal(t, "succeeded", s.waitRenamedTask(t, jobid, testkit.IsFinal, "final"))
		require.Len(t, testkit.ReadTrace(t, s.db), 1, "the task ran once")
	})

	t.Run("wait_task", func(t *testing.T) {
		testkit.Begin(t)
		s := newRenameScene(t)
		alice := testkit.ConnectTo(t, testkit.Cluster, s.db, "alice")
		first := testkit.Submit(t, alice, "SELECT 1")
		require.Equal(t, "succeeded", testkit.QueryOne[string](t, alice, "CALL lantern.wait_task($1, '30 s', NULL)", first))
		s.renameAndPlant(t)

		jobid := s.submitFresh(t, "alice", renamedSchema, "SELECT 1")
		var status *string
		err := alice.QueryRow(testkit.Ctx(t), "CALL "+renamedSchema+".wait_task($1, '30 s', NULL)", jobid).Scan(&status)
		s.requireNotHijacked(t)
		require.NoError(t, err)
		require.Equal(t, "succeeded", testkit.Deref(status))
	})
}

func TestSchemaRenameWarmWorker(t *testing.T) {
	t.Run("idle worker's next claim", func(t *testing.T) {
		testkit.Begin(t)
		s := newRenameScene(t)
		testkit.SetWorkerIdleTimeout(t, testkit.Connect(t, testkit.Superuser), time.Minute)
		pid := testkit.IdleWorkerIn(t, s.su, s.db, "alice")
		s.renameAndPlant(t)

		jobid := s.submitFresh(t, "alice", renamedSchema, testkit.TraceSQL)
		require.Equal(t, "succeeded", s.waitRenamedTask(t, jobid, testkit.IsFinal, "final"))
		trace := testkit.ReadTrace(t, s.db)
		require.Len(t, trace, 2)
		require.Equal(t, pid, trace[1].Pid, "the warm worker ran the task")
	})

	t.Run("running task's outcome", func(t *testing.T) {
		testkit.Begin(t)
		s := newRenameScene(t)
		testkit.SetWorkerIdleTimeout(t, testkit.Connect(t, testkit.Superuser), time.Minute)
		pid := testkit.IdleWorkerIn(t, s.su, s.db, "alice")
		const key = 917017
		lock := testkit.ConnectTo(t, testkit.Cluster, s.db, testkit.Superuser)
		testkit.MustExec(t, lock, fmt.Sprintf("SELECT pg_advisory_lock(%d)", key))
		jobid := s.submitFresh(t, "alice", "lantern", fmt.Sprintf("SELECT pg_advisory_xact_lock(%d); %s", key, testkit.TraceSQL))
		testkit.RequirePoll(t, testkit.WaitTimeout, "the task to wait for the advisory lock", testkit.WhileConnected(s.su, func() (bool, string) {
			var n int
			err := s.su.QueryRow(context.Background(),
				"SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = $1", pid).Scan(&n)
			return err == nil && n == 1, fmt.Sprintf("waiting advisory locks of pid %d: %d (err %v)", pid, n, err)
		}))
		s.renameAndPlant(t)

		testkit.MustExec(t, lock, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", key))
		require.Equal(t, "succeeded", s.waitRenamedTask(t, jobid, testkit.IsFinal, "final"))
		trace := testkit.ReadTrace(t, s.db)
		require.Len(t, trace, 2)
		require.Equal(t, pid, trace[1].Pid, "the warm worker ran the task")
	})
}

// A rename that commits while a statement of the bookkeeping is being
// analyzed: alice's cancel_task() resolves lantern.tasks, then waits for a
// lock on lantern.task_owners that a superuser holds; meanwhile the schema
// is renamed and eve plants her look-alikes. When the lock is granted,
// PostgreSQL looks the name up again (the catalogs changed while it
// waited) and finds eve's view. No cache can help there: the guard on the
// extension's statements (sqlguard.c) must fail the statement instead.
func TestSchemaRenameDuringAnalysis(t *testing.T) {
	testkit.Begin(t)
	s := newRenameScene(t)
	holder := testkit.ConnectTo(t, testkit.Cluster, s.db, testkit.Superuser)
	held := testkit.BeginHeld(t, holder)
	testkit.MustExec(t, holder, "LOCK TABLE lantern.task_owners IN ACCESS EXCLUSIVE MODE")

	alice := testkit.ConnectTo(t, testkit.Cluster, s.db, "alice")
	pid := testkit.QueryOne[int](t, alice, "SELECT pg_backend_pid()")
	type result struct {
		canceled *bool
		err      error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = alice.QueryRow(context.Background(), "SELECT lantern.cancel_task(1)").Scan(&r.canceled)
		done <- r
	}()
	testkit.RequirePoll(t, testkit.WaitTimeout, "alice's cancel_task() to wait for the lock on task_owners", testkit.WhileConnected(s.su, func() (bool, string) {
		var n int
		err := s.su.QueryRow(context.Background(),
			"SELECT count(*)::int FROM pg_locks WHERE pid = $1 AND NOT granted AND relation = 'lantern.task_owners'::regclass", pid).Scan(&n)
		return err == nil && n == 1, fmt.Sprintf("locks waited for: %d (err %v)", n, err)
	}))
	s.renameAndPlant(t)
	held.End(t, "COMMIT")

	var r result
	select {
	case r = <-done:
	case <-time.After(testkit.WaitTimeout):
		t.Fatal("alice's cancel_task() did not return")
	}
	s.requireNotHijacked(t)
	if r.err == nil {
		require.False(t, testkit.Deref(r.canceled), "there is no task 1")
		return
	}
	pgErr := testkit.RequirePgError(t, r.err, "55000", "cancel_task() after the rename")
	t.Logf("refused as psql shows it:\n%s", testkit.ErrorText(r.err))
	require.Contains(t, pgErr.Message, "lantern_async refused a statement of its own")
}

// The guard itself: a statement carrying the extension's mark may use the
// relations it marks and pg_catalog's objects, nothing else.
func TestSQLGuardMarkedStatements(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("guarded"))
	fn := testkit.Ident(t, testkit.Uniq("guarded_fn"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s (a int); INSERT INTO %[1]s VALUES (1)", tbl))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE FUNCTION %s() RETURNS int LANGUAGE sql AS 'SELECT 1'", fn))
	t.Cleanup(func() {
		testkit.CleanupExec(t, fmt.Sprintf("DROP TABLE IF EXISTS %s; DROP FUNCTION IF EXISTS %s()", tbl, fn))
	})
	oid := testkit.QueryOne[uint32](t, su, "SELECT $1::regclass::oid", tbl)
	mark := func(relid uint32) string { return fmt.Sprintf("/*lantern_async relation %d*/", relid) }

	require.Equal(t, 1, testkit.QueryOne[int](t, su, fmt.Sprintf("SELECT count(*)::int FROM %s%s", mark(oid), tbl)),
		"a marked relation")
	require.Equal(t, 1, testkit.QueryOne[int](t, su, fmt.Sprintf(
		"SELECT count(*)::int FROM %s%s t WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = t.a::oid OR true)", mark(oid), tbl)),
		"a marked relation and pg_catalog's")
	require.Equal(t, 1, testkit.QueryOne[int](t, su, fmt.Sprintf("SELECT %s() FROM %s", fn, tbl)), "no mark, no guard")

	for name, sql := range map[string]string{
		"a relation marked with another OID": fmt.Sprintf("SELECT count(*) FROM %s%s", mark(oid+1000000), tbl),
		"an unmarked relation in a sublink":  fmt.Sprintf("SELECT count(*) FROM %s%s t WHERE EXISTS (SELECT FROM %s u)", mark(oid+1000000), "pg_catalog.pg_class", tbl),
		"an unmarked relation in a CTE":      fmt.Sprintf("WITH c AS (SELECT * FROM %s) SELECT count(*) FROM %spg_catalog.pg_class, c", tbl, mark(1)),
		"a function outside pg_catalog":      fmt.Sprintf("SELECT %s() FROM %s%s", fn, mark(oid), tbl),
		"an operator outside pg_catalog":     fmt.Sprintf("SELECT a OPERATOR(public.===) 1 FROM %s%s", mark(oid), tbl),
	} {
		if name == "an operator outside pg_catalog" {
			op := fmt.Sprintf("CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)")
			testkit.MustExec(t, su, op)
			t.Cleanup(func() { testkit.CleanupExec(t, "DROP OPERATOR IF EXISTS public.=== (int, int)") })
		}
		_, err := su.Exec(testkit.Ctx(t), sql)
		testkit.RequirePgError(t, err, "55000", name)
		require.Contains(t, err.Error(), "lantern_async refused a statement of its own", name)
	}
}

// The update scripts name schema lantern: after a rename, ALTER EXTENSION
// UPDATE would run them, as a superuser, against eve's schema of that name.
// It is refused with what to do; done that way, the update works and the
// rename can be made again.
func TestSchemaRenameRefusesUpdate(t *testing.T) {
	testkit.Begin(t)
	su0 := testkit.Connect(t, testkit.Superuser)
	eve := testkit.NewTempRole(t, su0, "eve")
	db := testkit.NewDatabase(t, su0, "renamed_update")
	testkit.MustExec(t, su0, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", db, eve))
	s := &renameScene{db: db, su: testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser), eve: eve, eveSchema: "lantern"}
	testkit.MustExec(t, s.su, "CREATE EXTENSION lantern_async VERSION '0.2.0'; GRANT USAGE ON SCHEMA lantern TO alice")
	s.renameAndPlant(t)

	_, err := s.su.Exec(testkit.Ctx(t), "ALTER EXTENSION lantern_async UPDATE")
	t.Logf("ALTER EXTENSION UPDATE after the rename, as psql shows it:\n%s", testkit.ErrorText(err))
	pgErr := testkit.RequirePgError(t, err, "55000", "ALTER EXTENSION lantern_async UPDATE in schema "+renamedSchema)
	require.Equal(t, `extension "lantern_async" can be updated only in schema "lantern"`, pgErr.Message)
	require.Contains(t, pgErr.Hint, "Rename schema")
	require.Equal(t, "0.2.0", testkit.QueryOne[string](t, s.su, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	s.requireNotHijacked(t)

	// As the hint says: eve's schema out of the way, the name back, update, rename again.
	testkit.MustExec(t, s.su, "ALTER SCHEMA lantern RENAME TO eves_lantern")
	s.eveSchema = "eves_lantern"
	testkit.MustExec(t, s.su, "ALTER SCHEMA "+renamedSchema+" RENAME TO lantern")
	testkit.MustExec(t, s.su, "ALTER EXTENSION lantern_async UPDATE")
	require.Equal(t, testkit.CurrentVersion, testkit.QueryOne[string](t, s.su, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'"))
	testkit.MustExec(t, s.su, "ALTER SCHEMA lantern RENAME TO "+renamedSchema)
	testkit.MustExec(t, s.su, "CREATE TABLE trace(db name, usr name, sess name, pid int, at timestamptz); GRANT SELECT, INSERT ON trace TO alice")
	jobid := s.submitFresh(t, "alice", renamedSchema, testkit.TraceSQL)
	require.Equal(t, "succeeded", s.waitRenamedTask(t, jobid, testkit.IsFinal, "final"))
}
