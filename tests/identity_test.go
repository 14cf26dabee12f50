package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUsernameIsSubmitter(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	for _, role := range []string{"alice", "bob", superuser} {
		conn := connect(t, role)
		id := submit(t, conn, "SELECT 1")
		requireSucceeded(t, conn, id)
		require.Equal(t, role, getTask(t, su, id).Username)
	}
}

// username is CURRENT_USER at submit time, also after SET ROLE, and the task
// then runs as that role.
func TestUsernameIsCurrentUserAfterSetRole(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	tbl := ident(t, uniq("setrole"))
	mustExec(t, su, "SET ROLE alice")
	id := submit(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	mustExec(t, su, "RESET ROLE")
	requireSucceeded(t, su, id)
	require.Equal(t, "alice", getTask(t, su, id).Username)
	require.Equal(t, "alice", tableOwner(t, su, tbl))
}

func TestTaskRunsAsSubmitter(t *testing.T) {
	begin(t)
	alice := connect(t, "alice")
	su := connect(t, superuser)
	tbl := ident(t, uniq("who"))
	id := submit(t, alice, fmt.Sprintf(
		"CREATE TABLE %s AS SELECT current_user::text AS cu, session_user::text AS su, current_setting('is_superuser') AS issu", tbl))
	requireSucceeded(t, alice, id)

	var cu, sessionUser, isSuper string
	require.NoError(t, su.QueryRow(ctx(t), fmt.Sprintf("SELECT cu, su, issu FROM %s", tbl)).Scan(&cu, &sessionUser, &isSuper))
	require.Equal(t, "alice", cu, "current_user inside the task")
	require.Equal(t, "alice", sessionUser, "session_user inside the task")
	require.Equal(t, "off", isSuper, "is_superuser inside alice's task")
	require.Equal(t, "alice", tableOwner(t, su, tbl), "a table created by alice's task is owned by alice")
}

// A non-superuser's task must not be able to regain the worker's own
// identity.
func TestTaskCannotEscalate(t *testing.T) {
	begin(t)
	alice := connect(t, "alice")
	su := connect(t, superuser)

	t.Run("RESET ROLE", func(t *testing.T) {
		tbl := ident(t, uniq("esc"))
		id := submit(t, alice, fmt.Sprintf("RESET ROLE; CREATE TABLE %s AS SELECT current_user::text AS cu", tbl))
		status, msg := waitTask(t, alice, id)
		if status == "succeeded" {
			require.Equal(t, "alice", queryOne[string](t, su, fmt.Sprintf("SELECT cu FROM %s", tbl)),
				"RESET ROLE in alice's task must leave it running as alice")
			require.Equal(t, "alice", tableOwner(t, su, tbl))
		} else {
			t.Logf("RESET ROLE task failed: %s", msg)
		}
	})
	t.Run("SET SESSION AUTHORIZATION", func(t *testing.T) {
		id := submit(t, alice, "SET SESSION AUTHORIZATION "+superuser)
		msg := requireFailed(t, alice, id)
		require.Contains(t, msg, "permission denied")
	})
	t.Run("superuser-only function", func(t *testing.T) {
		id := submit(t, alice, "SELECT pg_read_file('PG_VERSION')")
		msg := requireFailed(t, alice, id)
		require.Contains(t, msg, "permission denied")
	})
}

func TestOwnershipEnforced(t *testing.T) {
	begin(t)
	alice := connect(t, "alice")
	bob := connect(t, "bob")
	su := connect(t, superuser)
	tbl := ident(t, uniq("t_alice"))
	mustExec(t, alice, fmt.Sprintf("CREATE TABLE %s(a int); INSERT INTO %[1]s VALUES (1), (2)", tbl))

	bobID := submit(t, bob, fmt.Sprintf("CREATE INDEX ON %s (a)", tbl))
	msg := requireFailedWithSQLState(t, bob, bobID, "42501")
	require.Contains(t, msg, "must be owner of table "+tbl)
	require.Equal(t, "bob", getTask(t, su, bobID).Username)

	aliceID := submit(t, alice, fmt.Sprintf("CREATE INDEX %s_a_idx ON %[1]s (a)", tbl))
	requireSucceeded(t, alice, aliceID)
	require.True(t, tableExists(t, tbl+"_a_idx"))
	require.Equal(t, 1, queryOne[int](t, su,
		"SELECT count(*)::int FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1", tbl),
		"only alice's index exists")
}

// A role that cannot log in (reached with SET ROLE) is refused at submit on
// 15; from 17 (BGWORKER_BYPASS_ROLELOGINCHECK) its tasks run as it.
func TestNoLoginRoleRefused(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := ident(t, uniq("nologin"))
	mustExec(t, su, fmt.Sprintf("CREATE ROLE %s NOLOGIN", role))
	// Make sure the refusal does not merely come from missing privileges.
	mustExec(t, su, fmt.Sprintf(`GRANT USAGE ON SCHEMA lantern TO %[1]s;
		GRANT EXECUTE ON FUNCTION lantern.async_task(text), lantern.async_task(text, text) TO %[1]s;
		GRANT SELECT ON lantern.tasks TO %[1]s;
		GRANT %[1]s TO alice`, role))
	before := countTasks(t, su)
	refused := workerNeedsLogin(t)
	var queued []int64

	for _, via := range []string{superuser, "alice"} {
		t.Run("SET ROLE from "+via, func(t *testing.T) {
			conn := connect(t, via)
			mustExec(t, conn, "SET ROLE "+role)
			for _, q := range []string{
				"SELECT lantern.async_task($1)",
				"SELECT lantern.async_task($1, 'no login')",
			} {
				var id int64
				err := conn.QueryRow(ctx(t), q, ranAsSQL(role)).Scan(&id)
				if !refused {
					require.NoError(t, err, "%s as %s (17+: NOLOGIN roles may submit)", q, role)
					queued = append(queued, id)
					continue
				}
				pgErr := requirePgError(t, err, "42501", "%s as %s must be refused", q, role)
				t.Logf("%s refused: %s (%s)", q, pgErr.Message, pgErr.Code)
				require.NotContains(t, pgErr.Message, "permission denied for schema")
				require.NotContains(t, pgErr.Message, "permission denied for function")
			}
			mustExec(t, conn, "RESET ROLE")
		})
	}
	if refused {
		require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = $1", role))
		require.Equal(t, before, countTasks(t, su), "nothing was queued")
		return
	}
	// 17+: each submit queued one task, which ran as the NOLOGIN role.
	require.Len(t, queued, 4)
	requireSucceeded(t, su, queued...)
	for _, id := range queued {
		require.Equal(t, role, getTask(t, su, id).Username)
	}
	require.Equal(t, 4, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = $1", role))
	require.Equal(t, before+4, countTasks(t, su), "one task per submit")
}

func TestRowLevelSecurity(t *testing.T) {
	begin(t)
	alice := connect(t, "alice")
	bob := connect(t, "bob")
	su := connect(t, superuser)
	aID := submitNamed(t, alice, "SELECT 1", "alice's")
	bID := submitNamed(t, bob, "SELECT 2", "bob's")
	requireSucceeded(t, alice, aID)
	requireSucceeded(t, bob, bID)

	require.Equal(t, 0, queryOne[int](t, alice, "SELECT count(*)::int FROM lantern.tasks WHERE username <> 'alice'"))
	require.Equal(t, 0, queryOne[int](t, alice, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", bID))
	require.Equal(t, 1, queryOne[int](t, alice, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", aID))
	require.Equal(t, 0, queryOne[int](t, bob, "SELECT count(*)::int FROM lantern.tasks WHERE username <> 'bob'"))
	require.Equal(t, 0, queryOne[int](t, bob, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", aID))
	require.Equal(t, 1, queryOne[int](t, bob, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", bID))
	require.Equal(t, 2, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid IN ($1, $2)", aID, bID),
		"the superuser sees every row")
	require.Greater(t, queryOne[int](t, su, "SELECT count(DISTINCT username)::int FROM lantern.tasks"), 1)
}

func TestTasksNotWritableByUsers(t *testing.T) {
	begin(t)
	alice := connect(t, "alice")
	su := connect(t, superuser)
	id := submit(t, alice, "SELECT 1")
	requireSucceeded(t, alice, id)

	for _, q := range []string{
		"INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'bob')",
		"INSERT INTO lantern.tasks (query) VALUES ('SELECT 1')",
		fmt.Sprintf("UPDATE lantern.tasks SET username = 'bob' WHERE jobid = %d", id),
		fmt.Sprintf("UPDATE lantern.tasks SET status = 'pending' WHERE jobid = %d", id),
		fmt.Sprintf("DELETE FROM lantern.tasks WHERE jobid = %d", id),
		"TRUNCATE lantern.tasks",
		fmt.Sprintf("INSERT INTO lantern.task_errors VALUES (%d, 'XX000')", id),
	} {
		_, err := alice.Exec(ctx(t), q)
		requirePgError(t, err, "42501", "alice: %s", q)
		require.True(t, strings.Contains(err.Error(), "permission denied"), "%s: %v", q, err)
	}
	r := getTask(t, su, id)
	require.Equal(t, "alice", r.Username)
	require.Equal(t, "succeeded", deref(r.Status))
}
