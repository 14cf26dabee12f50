package security

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// What the extension trusts: CREATE EXTENSION refuses a
// pre-existing schema lantern that a non-superuser controls, the C code
// uses the extension's own table (found through pg_depend, never by name),
// and a row that did not come from lantern.async_task never runs.
//
// These tests drop and re-create the extension (lantern.tasks starts
// empty afterwards, as after the tests of extension_test.go).

// requireExtensionAbsent asserts that nothing of the extension exists.
func requireExtensionAbsent(t *testing.T, su *pgx.Conn) {
	t.Helper()
	require.False(t, testkit.ExtensionInstalled(t, su), "pg_extension must have no lantern_async row")
	require.Equal(t, 0, testkit.QueryOne[int](t, su, `
		SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'lantern'`), "relations in schema lantern after a refused CREATE EXTENSION")
	require.Equal(t, 0, testkit.QueryOne[int](t, su, `
		SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'lantern' AND p.proname <> 'planted'`), "functions in schema lantern after a refused CREATE EXTENSION")
}

// requireUntrustedSchemaError asserts err is the refusal of a pre-existing
// schema lantern: 42P06, message, DETAIL and a HINT about dropping or
// renaming the schema.
func requireUntrustedSchemaError(t *testing.T, err error) {
	t.Helper()
	pgErr := testkit.RequirePgError(t, err, "42P06", "CREATE EXTENSION lantern_async with an untrusted schema lantern")
	t.Logf("refusal as psql shows it:\n%s", testkit.ErrorText(err))
	require.True(t, strings.HasPrefix(pgErr.Message, `schema "lantern" already exists`), "message %q", pgErr.Message)
	require.NotEmpty(t, pgErr.Detail, "the refusal has a DETAIL")
	hint := strings.ToLower(pgErr.Hint)
	require.True(t, strings.Contains(hint, "drop") || strings.Contains(hint, "rename"),
		"the HINT mentions dropping or renaming the schema: %q", pgErr.Hint)
}

func TestUntrustedSchemaRefused(t *testing.T) {
	cases := []struct {
		name string
		// setup creates schema lantern (the extension is dropped); role is
		// a fresh plain LOGIN role with CREATE on the database.
		setup   func(t *testing.T, su *pgx.Conn, role string)
		refused bool
	}{
		{"owned by a plain role", func(t *testing.T, su *pgx.Conn, role string) {
			testkit.MustExec(t, testkit.Connect(t, role), "CREATE SCHEMA lantern")
		}, true},
		{"CREATE granted to PUBLIC", func(t *testing.T, su *pgx.Conn, role string) {
			testkit.MustExec(t, su, "CREATE SCHEMA lantern; GRANT CREATE ON SCHEMA lantern TO PUBLIC")
		}, true},
		{"CREATE granted to a plain role", func(t *testing.T, su *pgx.Conn, role string) {
			testkit.MustExec(t, su, "CREATE SCHEMA lantern; GRANT CREATE ON SCHEMA lantern TO "+role)
		}, true},
		{"holds an object of a plain role", func(t *testing.T, su *pgx.Conn, role string) {
			// CREATE was granted once and revoked since: the object stays.
			testkit.MustExec(t, su, "CREATE SCHEMA lantern; GRANT USAGE, CREATE ON SCHEMA lantern TO "+role)
			testkit.MustExec(t, testkit.Connect(t, role), "CREATE FUNCTION lantern.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'")
			testkit.MustExec(t, su, "REVOKE CREATE ON SCHEMA lantern FROM "+role)
		}, true},
		{"owned by a superuser, no CREATE for others", func(t *testing.T, su *pgx.Conn, role string) {
			testkit.MustExec(t, su, "CREATE SCHEMA lantern; GRANT USAGE ON SCHEMA lantern TO PUBLIC")
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			role := testkit.NewTempRole(t, su, "squatter")
			testkit.ResetExtensionAtEnd(t)
			testkit.MustExec(t, su, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", testkit.DBName, role))
			testkit.DropExtension(t, su)
			tc.setup(t, su, role)

			_, err := su.Exec(testkit.Ctx(t), "CREATE EXTENSION lantern_async")
			if tc.refused {
				requireUntrustedSchemaError(t, err)
				requireExtensionAbsent(t, su)
				return
			}
			require.NoError(t, err, "CREATE EXTENSION with a superuser's schema lantern")
			require.NoError(t, testkit.GrantExtensionAccess(testkit.Ctx(t), su))
			alice := testkit.Connect(t, "alice")
			testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))
		})
	}
}

// plantTaskTable is the schema squatter's attack once the attacker owns the
// extension's schema: move it away, create a look-alike lantern.tasks and
// queue in it, as postgres, a task that makes the attacker superuser.
func plantTaskTable(t *testing.T, atk *pgx.Conn, attacker string) {
	t.Helper()
	testkit.MustExec(t, atk, fmt.Sprintf(`
		ALTER SCHEMA lantern RENAME TO lantern_old;
		CREATE SCHEMA lantern;
		CREATE TABLE lantern.tasks (jobid bigint PRIMARY KEY, query text NOT NULL, pg_cron_job_name text,
			job_name text, username text NOT NULL, started_at timestamptz NOT NULL DEFAULT now(),
			duration interval, status text, error_message text);
		CREATE TABLE lantern.task_errors (jobid bigint PRIMARY KEY, sqlstate text NOT NULL);
		GRANT USAGE ON SCHEMA lantern TO PUBLIC;
		GRANT ALL ON lantern.tasks, lantern.task_errors TO PUBLIC;
		INSERT INTO lantern.tasks (jobid, query, username, status)
			VALUES (1000000, 'ALTER ROLE %s SUPERUSER', 'postgres', 'pending')`, attacker))
}

// TestSchemaSquatterCannotEscalate is the whole schema squatter's attack: a role
// with CREATE on the database creates schema lantern before the
// administrator runs CREATE EXTENSION. The install must be refused; where
// it is not (today), the test goes on with the attack, and the attacker
// must still never become superuser.
func TestSchemaSquatterCannotEscalate(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	attacker := testkit.NewTempRole(t, su, "squatter")
	testkit.ResetExtensionAtEnd(t)
	testkit.MustExec(t, su, fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", testkit.DBName, attacker))
	testkit.DropExtension(t, su)
	atk := testkit.Connect(t, attacker)
	testkit.MustExec(t, atk, "CREATE SCHEMA lantern")

	_, err := su.Exec(testkit.Ctx(t), "CREATE EXTENSION lantern_async")
	refused := err != nil
	if !refused {
		t.Errorf("CREATE EXTENSION accepted schema lantern owned by %s; going on with the attack", attacker)
		plantTaskTable(t, atk, attacker)
	} else {
		requireUntrustedSchemaError(t, err)
		requireExtensionAbsent(t, su)
		// The administrator follows the hint: rename the schema away.
		testkit.MustExec(t, su, "ALTER SCHEMA lantern RENAME TO lantern_old")
		testkit.CreateExtension(t, su)
		// The attacker can neither take over nor write into the new schema.
		_, err = atk.Exec(testkit.Ctx(t), "ALTER SCHEMA lantern RENAME TO lantern_mine")
		testkit.RequirePgError(t, err, "42501", "the attacker renames the extension's schema")
		_, err = atk.Exec(testkit.Ctx(t), "CREATE TABLE lantern.planted (a int)")
		testkit.RequirePgError(t, err, "42501", "the attacker creates a table in the extension's schema")
	}

	testkit.Never(t, 5*time.Second, func() (bool, string) {
		var super bool
		err := su.QueryRow(testkit.Ctx(t), "SELECT rolsuper FROM pg_roles WHERE rolname = $1", attacker).Scan(&super)
		return err == nil && super, fmt.Sprintf("%s has rolsuper = %v (err %v)", attacker, super, err)
	}, "the attacker becoming superuser through a planted task")
	require.Equal(t, roleAttrs{MemberOf: []string{}}, readRoleAttrs(t, su, attacker), "the attacker is still a plain role")

	if refused {
		// The properly installed extension works.
		alice := testkit.Connect(t, "alice")
		testkit.RequireSucceeded(t, alice, testkit.Submit(t, alice, "SELECT 1"))
	}
}

// insertDirectly queues a row in lantern.tasks as the superuser, bypassing
// lantern.async_task.
func insertDirectly(t *testing.T, su *pgx.Conn, query, username string) int64 {
	t.Helper()
	return testkit.QueryOne[int64](t, su, `
		INSERT INTO lantern.tasks (query, username, status) VALUES ($1, $2, 'pending') RETURNING jobid`,
		query, username)
}

// TestRowNotFromAsyncTaskNeverRuns: a 'pending' row a superuser inserted
// into lantern.tasks directly, not through async_task, never runs: it is
// 'failed' with a message saying why and SQLSTATE 42501. The role's real
// tasks still run.
func TestRowNotFromAsyncTaskNeverRuns(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewTempRole(t, su, "planted_for")
	marker := testkit.MarkerTable(t, su, "planted", role)

	var planted []int64
	for i, username := range []string{role, testkit.Superuser} {
		planted = append(planted, insertDirectly(t, su, testkit.MarkerInsert(marker, i+1), username))
	}
	// No submit notes such rows: they are found by the next sweep of the
	// database, which follows the next tasks that run there.
	conn := testkit.Connect(t, role)
	testkit.RequireSucceeded(t, conn, testkit.Submit(t, conn, testkit.MarkerInsert(marker, 10)))
	for i, id := range planted {
		msg := testkit.RequireFailedWithSQLState(t, su, id, "42501")
		require.Contains(t, msg, "was not submitted through lantern.async_task", "task %d", id)
		require.Equal(t, []string{role, testkit.Superuser}[i], testkit.GetTask(t, su, id).Username)
	}
	require.Equal(t, []int{10}, testkit.MarkerValues(t, marker), "no directly inserted row may run")
}
