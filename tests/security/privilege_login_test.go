package security

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// Privilege isolation by LOGIN: on 15 NOLOGIN roles cannot submit, and a
// role changed before its task starts gets the task failed; from 17
// (BGWORKER_BYPASS_ROLELOGINCHECK) only a dropped role does.

// TestNoLoginRefusedWithHint extends TestNoLoginRoleRefused: on 15 the
// refusal carries a HINT, holds for a NOLOGIN role reached through a
// SECURITY DEFINER function (CURRENT_USER is its owner) and inside a
// transaction, and nothing is queued. From 17 each of these submits is
// accepted as the NOLOGIN role and its task runs as it (the rolled back
// transaction's are gone).
func TestNoLoginRefusedWithHint(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	plain := testkit.NewCreatorRole(t, su, "viaplain")
	nologin := testkit.Ident(t, testkit.Uniq("nl"))
	fn := testkit.Ident(t, testkit.Uniq("nl_submit"))
	testkit.MustExec(t, su, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN; GRANT %[1]s TO %[2]s;
		CREATE FUNCTION public.%[3]s() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
			AS $fn$ SELECT lantern.async_task(%[4]s) $fn$;
		ALTER FUNCTION public.%[3]s() OWNER TO %[1]s;
		GRANT EXECUTE ON FUNCTION public.%[3]s() TO %[2]s`, nologin, plain, fn, testkit.Lit(testkit.RanAsSQL(nologin))))
	conn := testkit.Connect(t, plain)
	total := testkit.CountTasks(t, su)
	refused := testkit.WorkerNeedsLogin(t)
	var accepted []int64 // 17+: the committed submits as nologin

	// check asserts the outcome of a submit as nologin.
	check := func(t *testing.T, err error) {
		t.Helper()
		if !refused {
			require.NoError(t, err, "submitting as NOLOGIN role %s (17+: accepted)", nologin)
			return
		}
		pgErr := testkit.RequirePgError(t, err, "42501", "submitting as NOLOGIN role %s", nologin)
		t.Logf("refused: %s", testkit.ErrorText(err))
		require.Contains(t, pgErr.Message, nologin, "the message names the role")
		require.NotEmpty(t, pgErr.Hint, "the refusal has a HINT")
		require.Contains(t, pgErr.Hint, "LOGIN")
	}
	t.Run("SET ROLE", func(t *testing.T) {
		testkit.MustExec(t, conn, "SET ROLE "+nologin)
		var id int64
		check(t, conn.QueryRow(testkit.Ctx(t), "SELECT lantern.async_task($1)", testkit.RanAsSQL(nologin)).Scan(&id))
		testkit.MustExec(t, conn, "RESET ROLE")
		if !refused {
			accepted = append(accepted, id)
		}
	})
	t.Run("SECURITY DEFINER function", func(t *testing.T) {
		var id int64
		check(t, conn.QueryRow(testkit.Ctx(t), fmt.Sprintf("SELECT public.%s()", fn)).Scan(&id))
		if !refused {
			accepted = append(accepted, id)
		}
	})
	t.Run("in a transaction after a valid submit", func(t *testing.T) {
		tx, err := conn.Begin(testkit.Ctx(t))
		require.NoError(t, err)
		var ok, id int64
		require.NoError(t, tx.QueryRow(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1')").Scan(&ok))
		_, err = tx.Exec(testkit.Ctx(t), "SET LOCAL ROLE "+nologin)
		require.NoError(t, err)
		check(t, tx.QueryRow(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 2')").Scan(&id))
		require.NoError(t, tx.Rollback(testkit.Ctx(t)))
		require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE jobid IN ($1, $2)", ok, id),
			"the transaction's submits were rolled back with it")
	})
	require.Equal(t, 0, testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = $1", plain))
	require.Equal(t, len(accepted), testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = $1", nologin))
	require.Equal(t, total+len(accepted), testkit.CountTasks(t, su), "nothing else was queued")
	if !refused {
		require.Len(t, accepted, 2, "SET ROLE and SECURITY DEFINER")
		testkit.RequireSucceeded(t, su, accepted...)
		for _, id := range accepted {
			require.Equal(t, nologin, testkit.GetTask(t, su, id).Username)
		}
	}

	// The same role with LOGIN may submit (on 15 the refusal is about
	// LOGIN, not about the role).
	testkit.MustExec(t, su, fmt.Sprintf("ALTER ROLE %s LOGIN", nologin))
	var id int64
	require.NoError(t, conn.QueryRow(testkit.Ctx(t), fmt.Sprintf("SELECT public.%s()", fn)).Scan(&id))
	testkit.RequireSucceeded(t, su, id)
	require.Equal(t, nologin, testkit.GetTask(t, su, id).Username)
}

// TestRoleChangedBeforeTaskRuns: a role that is dropped (or, on 15, loses
// LOGIN) between submitting and the task's start gets the task 'failed'
// with a message saying so; the task never runs under another identity.
// From 17 a worker logs in without LOGIN (BGWORKER_BYPASS_ROLELOGINCHECK),
// so the NOLOGIN role's task runs, as it. (A renamed role is the same role:
// TestRenamedRolesKeepTheirTasks.)
// The submit is committed only after the change, so the launcher cannot
// have started it before.
func TestRoleChangedBeforeTaskRuns(t *testing.T) {
	cases := []struct {
		name, change, code, msg string
		runs                    bool // the task runs (as the role) rather than failing
	}{
		{"NOLOGIN", "ALTER ROLE %s NOLOGIN", "28000", `role "%s" is not permitted to log in`, !testkit.WorkerNeedsLogin(t)},
		{"dropped", "DROP ROLE %s", "42704", `the role that submitted this task no longer exists%.0s`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			// No grants: a role with privileges cannot be dropped.
			role := testkit.NewLoginRole(t, su, "changed")
			conn := testkit.Connect(t, role)
			tx, err := conn.Begin(testkit.Ctx(t))
			require.NoError(t, err)
			id := testkit.Submit(t, tx, testkit.RanAsSQL(role))
			testkit.MustExec(t, su, fmt.Sprintf(tc.change, role))
			require.NoError(t, tx.Commit(testkit.Ctx(t)))

			if tc.runs {
				testkit.RequireSucceeded(t, su, id)
			} else {
				msg := testkit.RequireFailedWithSQLState(t, su, id, tc.code)
				require.True(t, strings.HasPrefix(msg, "ERROR:  "+fmt.Sprintf(tc.msg, role)), "error_message %q", msg)
			}
			require.Equal(t, role, testkit.GetTask(t, su, id).Username)
			testkit.RequireNoOrphans(t, su)
		})
	}
}
