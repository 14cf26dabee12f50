package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Privilege isolation by LOGIN: NOLOGIN roles cannot submit, and a role
// changed before its task starts gets the task failed.

// TestNoLoginRefusedWithHint extends TestNoLoginRoleRefused: the refusal
// carries a HINT, holds for a NOLOGIN role reached through a SECURITY
// DEFINER function (CURRENT_USER is its owner) and inside a transaction,
// and nothing is queued.
func TestNoLoginRefusedWithHint(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	plain := newCreatorRole(t, su, "viaplain")
	nologin := ident(t, uniq("nl"))
	fn := ident(t, uniq("nl_submit"))
	mustExec(t, su, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN; GRANT %[1]s TO %[2]s;
		CREATE FUNCTION public.%[3]s() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
			AS $$ SELECT lantern.async_task('SELECT 1') $$;
		ALTER FUNCTION public.%[3]s() OWNER TO %[1]s;
		GRANT EXECUTE ON FUNCTION public.%[3]s() TO %[2]s`, nologin, plain, fn))
	conn := connect(t, plain)
	total := countTasks(t, su)

	check := func(t *testing.T, err error) {
		t.Helper()
		pgErr := requirePgError(t, err, "42501", "submitting as NOLOGIN role %s", nologin)
		t.Logf("refused: %s", errorText(err))
		require.Contains(t, pgErr.Message, nologin, "the message names the role")
		require.NotEmpty(t, pgErr.Hint, "the refusal has a HINT")
		require.Contains(t, pgErr.Hint, "LOGIN")
	}
	t.Run("SET ROLE", func(t *testing.T) {
		mustExec(t, conn, "SET ROLE "+nologin)
		var id int64
		check(t, conn.QueryRow(ctx(t), "SELECT lantern.async_task('SELECT 1')").Scan(&id))
		mustExec(t, conn, "RESET ROLE")
	})
	t.Run("SECURITY DEFINER function", func(t *testing.T) {
		var id int64
		check(t, conn.QueryRow(ctx(t), fmt.Sprintf("SELECT public.%s()", fn)).Scan(&id))
	})
	t.Run("in a transaction after a valid submit", func(t *testing.T) {
		tx, err := conn.Begin(ctx(t))
		require.NoError(t, err)
		var ok, id int64
		require.NoError(t, tx.QueryRow(ctx(t), "SELECT lantern.async_task('SELECT 1')").Scan(&ok))
		_, err = tx.Exec(ctx(t), "SET LOCAL ROLE "+nologin)
		require.NoError(t, err)
		check(t, tx.QueryRow(ctx(t), "SELECT lantern.async_task('SELECT 2')").Scan(&id))
		require.NoError(t, tx.Rollback(ctx(t)))
		require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid = $1", ok),
			"the transaction's earlier submit was rolled back with it")
	})
	require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username IN ($1, $2)", nologin, plain))
	require.Equal(t, total, countTasks(t, su), "nothing was queued")

	// The same role with LOGIN may submit (the refusal is about LOGIN, not
	// about the role).
	mustExec(t, su, fmt.Sprintf("ALTER ROLE %s LOGIN", nologin))
	var id int64
	require.NoError(t, conn.QueryRow(ctx(t), fmt.Sprintf("SELECT public.%s()", fn)).Scan(&id))
	requireSucceeded(t, su, id)
	require.Equal(t, nologin, getTask(t, su, id).Username)
}

// TestRoleChangedBeforeTaskRuns: a role that loses LOGIN or is dropped
// between submitting and the task's start gets the task 'failed' with a
// message saying so; the task never runs under another identity. (A renamed
// role is the same role: TestRenamedRolesKeepTheirTasks.)
// The submit is committed only after the change, so the launcher cannot
// have started it before.
func TestRoleChangedBeforeTaskRuns(t *testing.T) {
	cases := []struct {
		name, change, code, msg string
	}{
		{"NOLOGIN", "ALTER ROLE %s NOLOGIN", "28000", `role "%s" is not permitted to log in`},
		{"dropped", "DROP ROLE %s", "42704", `the role that submitted this task no longer exists%.0s`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			begin(t)
			su := connect(t, superuser)
			// No grants: a role with privileges cannot be dropped.
			role := newLoginRole(t, su, "changed")
			conn := connect(t, role)
			tx, err := conn.Begin(ctx(t))
			require.NoError(t, err)
			id := submit(t, tx, "SELECT current_user")
			mustExec(t, su, fmt.Sprintf(tc.change, role))
			require.NoError(t, tx.Commit(ctx(t)))

			msg := requireFailedWithSQLState(t, su, id, tc.code)
			require.True(t, strings.HasPrefix(msg, "ERROR:  "+fmt.Sprintf(tc.msg, role)), "error_message %q", msg)
			require.Equal(t, role, getTask(t, su, id).Username)
			requireNoOrphans(t, su)
		})
	}
}
