package security

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

func TestUsernameIsSubmitter(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	for _, role := range []string{"alice", "bob", testkit.Superuser} {
		conn := testkit.Connect(t, role)
		id := testkit.Submit(t, conn, "SELECT 1")
		testkit.RequireSucceeded(t, conn, id)
		require.Equal(t, role, testkit.GetTask(t, su, id).Username)
	}
}

// username is CURRENT_USER at submit time, also after SET ROLE, and the task
// then runs as that role.
func TestUsernameIsCurrentUserAfterSetRole(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("setrole"))
	testkit.MustExec(t, su, "SET ROLE alice")
	id := testkit.Submit(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	testkit.MustExec(t, su, "RESET ROLE")
	testkit.RequireSucceeded(t, su, id)
	require.Equal(t, "alice", testkit.GetTask(t, su, id).Username)
	require.Equal(t, "alice", testkit.TableOwner(t, su, tbl))
}

func TestTaskRunsAsSubmitter(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("who"))
	id := testkit.Submit(t, alice, fmt.Sprintf(
		"CREATE TABLE %s AS SELECT current_user::text AS cu, session_user::text AS su, current_setting('is_superuser') AS issu", tbl))
	testkit.RequireSucceeded(t, alice, id)

	var cu, sessionUser, isSuper string
	require.NoError(t, su.QueryRow(testkit.Ctx(t), fmt.Sprintf("SELECT cu, su, issu FROM %s", tbl)).Scan(&cu, &sessionUser, &isSuper))
	require.Equal(t, "alice", cu, "current_user inside the task")
	require.Equal(t, "alice", sessionUser, "session_user inside the task")
	require.Equal(t, "off", isSuper, "is_superuser inside alice's task")
	require.Equal(t, "alice", testkit.TableOwner(t, su, tbl), "a table created by alice's task is owned by alice")
}

// A non-superuser's task must not be able to regain the worker's own
// identity.
func TestTaskCannotEscalate(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	su := testkit.Connect(t, testkit.Superuser)

	t.Run("RESET ROLE", func(t *testing.T) {
		tbl := testkit.Ident(t, testkit.Uniq("esc"))
		id := testkit.Submit(t, alice, fmt.Sprintf("RESET ROLE; CREATE TABLE %s AS SELECT current_user::text AS cu", tbl))
		status, msg := testkit.WaitTask(t, alice, id)
		if status == "succeeded" {
			require.Equal(t, "alice", testkit.QueryOne[string](t, su, fmt.Sprintf("SELECT cu FROM %s", tbl)),
				"RESET ROLE in alice's task must leave it running as alice")
			require.Equal(t, "alice", testkit.TableOwner(t, su, tbl))
		} else {
			t.Logf("RESET ROLE task failed: %s", msg)
		}
	})
	t.Run("SET SESSION AUTHORIZATION", func(t *testing.T) {
		id := testkit.Submit(t, alice, "SET SESSION AUTHORIZATION "+testkit.Superuser)
		msg := testkit.RequireFailed(t, alice, id)
		require.Contains(t, msg, "permission denied")
	})
	t.Run("superuser-only function", func(t *testing.T) {
		id := testkit.Submit(t, alice, "SELECT pg_read_file('PG_VERSION')")
		msg := testkit.RequireFailed(t, alice, id)
		require.Contains(t, msg, "permission denied")
	})
}

func TestOwnershipEnforced(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	bob := testkit.Connect(t, "bob")
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("t_alice"))
	testkit.MustExec(t, alice, fmt.Sprintf("CREATE TABLE %s(a int); INSERT INTO %[1]s VALUES (1), (2)", tbl))

	bobID := testkit.Submit(t, bob, fmt.Sprintf("CREATE INDEX ON %s (a)", tbl))
	msg := testkit.RequireFailedWithSQLState(t, bob, bobID, "42501")
	require.Contains(t, msg, "must be owner of table "+tbl)
	require.Equal(t, "bob", testkit.GetTask(t, su, bobID).Username)

	aliceID := testkit.Submit(t, alice, fmt.Sprintf("CREATE INDEX %s_a_idx ON %[1]s (a)", tbl))
	testkit.RequireSucceeded(t, alice, aliceID)
	require.True(t, testkit.TableExists(t, tbl+"_a_idx"))
	require.Equal(t, 1, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1", tbl),
		"only alice's index exists")
}

// A role that cannot log in (reached with SET ROLE) is refused at submit on
// 15; from 17 (BGWORKER_BYPASS_ROLELOGINCHECK) its tasks run as it.
func TestNoLoginRoleRefused(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.Ident(t, testkit.Uniq("nologin"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE ROLE %s NOLOGIN", role))
	// Make sure the refusal does not merely come from missing privileges.
	testkit.MustExec(t, su, fmt.Sprintf(`GRANT USAGE ON SCHEMA lantern TO %[1]s;
		GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lantern TO %[1]s;
		GRANT SELECT ON lantern.tasks TO %[1]s;
		GRANT %[1]s TO alice`, role))
	before := testkit.CountTasks(t, su)
	refused := testkit.WorkerNeedsLogin(t)
	var queued []int64

	for _, via := range []string{testkit.Superuser, "alice"} {
		t.Run("SET ROLE from "+via, func(t *testing.T) {
			conn := testkit.Connect(t, via)
			testkit.MustExec(t, conn, "SET ROLE "+role)
			for _, q := range []string{
				"SELECT lantern.async_task($1)",
				"SELECT lantern.async_task($1, 'no login')",
			} {
				var id int64
				err := conn.QueryRow(testkit.Ctx(t), q, testkit.RanAsSQL(role)).Scan(&id)
				if !refused {
					require.NoError(t, err, "%s as %s (17+: NOLOGIN roles may submit)", q, role)
					queued = append(queued, id)
					continue
				}
				pgErr := testkit.RequirePgError(t, err, "42501", "%s as %s must be refused", q, role)
				t.Logf("%s refused: %s (%s)", q, pgErr.Message, pgErr.Code)
				require.NotContains(t, pgErr.Message, "permission denied for schema")
				require.NotContains(t, pgErr.Message, "permission denied for function")
			}
			testkit.MustExec(t, conn, "RESET ROLE")
		})
	}
	if refused {
		require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = $1", role))
		require.Equal(t, before, testkit.CountTasks(t, su), "nothing was queued")
		return
	}
	// 17+: each submit queued one task, which ran as the NOLOGIN role.
	require.Len(t, queued, 4)
	testkit.RequireSucceeded(t, su, queued...)
	for _, id := range queued {
		require.Equal(t, role, testkit.GetTask(t, su, id).Username)
	}
	require.Equal(t, 4, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = $1", role))
	require.Equal(t, before+4, testkit.CountTasks(t, su), "one task per submit")
}

func TestRowLevelSecurity(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	bob := testkit.Connect(t, "bob")
	su := testkit.Connect(t, testkit.Superuser)
	aID := testkit.SubmitNamed(t, alice, "SELECT 1", "alice's")
	bID := testkit.SubmitNamed(t, bob, "SELECT 2", "bob's")
	testkit.RequireSucceeded(t, alice, aID)
	testkit.RequireSucceeded(t, bob, bID)

	require.Equal(t, 0, testkit.QueryOne[int](t, alice, "SELECT count(*)::int FROM lantern.tasks WHERE username <> 'alice'"))
	require.Equal(t, 0, testkit.QueryOne[int](t, alice, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", bID))
	require.Equal(t, 1, testkit.QueryOne[int](t, alice, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", aID))
	require.Equal(t, 0, testkit.QueryOne[int](t, bob, "SELECT count(*)::int FROM lantern.tasks WHERE username <> 'bob'"))
	require.Equal(t, 0, testkit.QueryOne[int](t, bob, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", aID))
	require.Equal(t, 1, testkit.QueryOne[int](t, bob, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", bID))
	require.Equal(t, 2, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid IN ($1, $2)", aID, bID),
		"the superuser sees every row")
	require.Greater(t, testkit.QueryOne[int](t, su, "SELECT count(DISTINCT username)::int FROM lantern.tasks"), 1)
}

func TestTasksNotWritableByUsers(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	su := testkit.Connect(t, testkit.Superuser)
	id := testkit.Submit(t, alice, "SELECT 1")
	testkit.RequireSucceeded(t, alice, id)

	for _, q := range []string{
		"INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'bob')",
		"INSERT INTO lantern.tasks (query) VALUES ('SELECT 1')",
		fmt.Sprintf("UPDATE lantern.tasks SET username = 'bob' WHERE jobid = %d", id),
		fmt.Sprintf("UPDATE lantern.tasks SET status = 'pending' WHERE jobid = %d", id),
		fmt.Sprintf("DELETE FROM lantern.tasks WHERE jobid = %d", id),
		"TRUNCATE lantern.tasks",
		fmt.Sprintf("INSERT INTO lantern.task_errors VALUES (%d, 'XX000')", id),
	} {
		_, err := alice.Exec(testkit.Ctx(t), q)
		testkit.RequirePgError(t, err, "42501", "alice: %s", q)
		require.True(t, strings.Contains(err.Error(), "permission denied"), "%s: %v", q, err)
	}
	r := testkit.GetTask(t, su, id)
	require.Equal(t, "alice", r.Username)
	require.Equal(t, "succeeded", testkit.Deref(r.Status))
}
