package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Tests of unusual task query strings.

func TestSubmitNullOrEmptyQuery(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")

	cases := []struct {
		name, sql string
		args      []any
		code, msg string
	}{
		{"NULL", "SELECT lantern.async_task(NULL)", nil, "22004", "task query must not be null"},
		{"NULL with job_name", "SELECT lantern.async_task(NULL, 'a name')", nil, "22004", "task query must not be null"},
		{"NULL parameter", "SELECT lantern.async_task($1::text)", []any{nil}, "22004", "task query must not be null"},
		{"empty", "SELECT lantern.async_task('')", nil, "22023", "task query must not be empty"},
		{"empty with job_name", "SELECT lantern.async_task('', 'a name')", nil, "22023", "task query must not be empty"},
		{"whitespace", "SELECT lantern.async_task($1)", []any{"  \n\t "}, "22023", "task query must not be empty"},
		{"whitespace with job_name", "SELECT lantern.async_task($1, 'a name')", []any{"  \n\t \r"}, "22023", "task query must not be empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, conn := range []*pgx.Conn{alice, su} {
				before := testkit.CountTasks(t, su)
				var id *int64
				err := conn.QueryRow(testkit.Ctx(t), c.sql, c.args...).Scan(&id)
				pgErr := testkit.RequirePgError(t, err, c.code, "%s (user %s) returned jobid %v", c.sql, conn.Config().User, id)
				require.Equal(t, c.msg, pgErr.Message)
				require.Equal(t, before, testkit.CountTasks(t, su), "nothing may be queued by %s", c.sql)
			}
		})
	}
}

func TestLargeQuery(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	const size = 1 << 20
	big := strings.Repeat("x", size)

	t.Run("SELECT length", func(t *testing.T) {
		q := fmt.Sprintf("SELECT length('%s')", big)
		id := testkit.Submit(t, alice, q)
		testkit.RequireSucceeded(t, alice, id)
		require.Equal(t, len(q), testkit.QueryOne[int](t, su, "SELECT length(query) FROM lantern.tasks WHERE jobid = $1", id),
			"the query is stored whole")
		require.True(t, testkit.QueryOne[bool](t, su, "SELECT query = $2 FROM lantern.tasks WHERE jobid = $1", id, q))
	})

	t.Run("INSERT", func(t *testing.T) {
		tbl := testkit.Ident(t, testkit.Uniq("big"))
		testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(v text)", tbl))
		testkit.MustExec(t, su, fmt.Sprintf("GRANT INSERT ON %s TO alice", tbl))
		id := testkit.Submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES ('%s')", tbl, big))
		testkit.RequireSucceeded(t, alice, id)
		require.Equal(t, size, testkit.QueryOne[int](t, su, fmt.Sprintf("SELECT length(v) FROM %s", tbl)))
	})
}

func TestTaskSubmitsTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	marker := testkit.MarkerTable(t, su, "nested_marker", "alice")

	inner := testkit.MarkerInsert(marker, 1)
	outer := testkit.Submit(t, alice, fmt.Sprintf("SELECT lantern.async_task(%s)", testkit.Lit(inner)))
	testkit.RequireSucceeded(t, alice, outer)

	// The outer task has committed, so the inner row exists now.
	var innerID int64
	var innerUser string
	require.NoError(t, su.QueryRow(testkit.Ctx(t),
		"SELECT jobid, username FROM lantern.tasks WHERE query = $1", inner).Scan(&innerID, &innerUser))
	require.Greater(t, innerID, outer)
	require.Equal(t, "alice", innerUser, "the nested task belongs to the role whose task submitted it")
	testkit.RequireSucceeded(t, alice, innerID)
	require.Equal(t, []int{1}, testkit.MarkerValues(t, marker))
}

func TestCommentOrEmptyStatementQuery(t *testing.T) {
	testkit.Begin(t)
	alice := testkit.Connect(t, "alice")
	for _, q := range []string{
		"-- only a comment",
		"/* only a comment */",
		";",
		";;",
		" ; -- and a comment\n",
	} {
		t.Run(q, func(t *testing.T) {
			id := testkit.Submit(t, alice, q)
			status, msg := testkit.WaitTask(t, alice, id)
			require.Equal(t, "succeeded", status, "query %q: error_message %q", q, msg)
			require.Empty(t, msg)
			require.Empty(t, testkit.TaskSQLState(t, id))
		})
	}
}

// psql -c would read COPY FROM STDIN data from its own stdin; a task has no
// client, so it must fail clearly rather than load nothing.
func TestCopyFromStdinRefused(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	table := testkit.MarkerTable(t, su, "copy_stdin")
	jobid := testkit.Submit(t, su, "COPY "+table+" FROM STDIN")
	errMsg := testkit.RequireFailedWithSQLState(t, su, jobid, "0A000")
	require.True(t, strings.HasPrefix(errMsg, "ERROR:  COPY FROM STDIN is not supported in a background task\nDETAIL:  "), errMsg)
}
