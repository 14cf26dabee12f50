package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Tests of unusual task query strings.

func TestSubmitNullOrEmptyQuery(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")

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
				before := countTasks(t, su)
				var id *int64
				err := conn.QueryRow(ctx(t), c.sql, c.args...).Scan(&id)
				pgErr := requirePgError(t, err, c.code, "%s (user %s) returned jobid %v", c.sql, conn.Config().User, id)
				require.Equal(t, c.msg, pgErr.Message)
				require.Equal(t, before, countTasks(t, su), "nothing may be queued by %s", c.sql)
			}
		})
	}
}

func TestLargeQuery(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	const size = 1 << 20
	big := strings.Repeat("x", size)

	t.Run("SELECT length", func(t *testing.T) {
		q := fmt.Sprintf("SELECT length('%s')", big)
		id := submit(t, alice, q)
		requireSucceeded(t, alice, id)
		require.Equal(t, len(q), queryOne[int](t, su, "SELECT length(query) FROM lantern.tasks WHERE jobid = $1", id),
			"the query is stored whole")
		require.True(t, queryOne[bool](t, su, "SELECT query = $2 FROM lantern.tasks WHERE jobid = $1", id, q))
	})

	t.Run("INSERT", func(t *testing.T) {
		tbl := ident(t, uniq("big"))
		mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(v text)", tbl))
		mustExec(t, su, fmt.Sprintf("GRANT INSERT ON %s TO alice", tbl))
		id := submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES ('%s')", tbl, big))
		requireSucceeded(t, alice, id)
		require.Equal(t, size, queryOne[int](t, su, fmt.Sprintf("SELECT length(v) FROM %s", tbl)))
	})
}

func TestTaskSubmitsTask(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	marker := markerTable(t, su, "nested_marker", "alice")

	inner := markerInsert(marker, 1)
	outer := submit(t, alice, fmt.Sprintf("SELECT lantern.async_task(%s)", lit(inner)))
	requireSucceeded(t, alice, outer)

	// The outer task has committed, so the inner row exists now.
	var innerID int64
	var innerUser string
	require.NoError(t, su.QueryRow(ctx(t),
		"SELECT jobid, username FROM lantern.tasks WHERE query = $1", inner).Scan(&innerID, &innerUser))
	require.Greater(t, innerID, outer)
	require.Equal(t, "alice", innerUser, "the nested task belongs to the role whose task submitted it")
	requireSucceeded(t, alice, innerID)
	require.Equal(t, []int{1}, markerValues(t, marker))
}

func TestCommentOrEmptyStatementQuery(t *testing.T) {
	begin(t)
	alice := connect(t, "alice")
	for _, q := range []string{
		"-- only a comment",
		"/* only a comment */",
		";",
		";;",
		" ; -- and a comment\n",
	} {
		t.Run(q, func(t *testing.T) {
			id := submit(t, alice, q)
			status, msg := waitTask(t, alice, id)
			require.Equal(t, "succeeded", status, "query %q: error_message %q", q, msg)
			require.Empty(t, msg)
			require.Empty(t, taskSQLState(t, id))
		})
	}
}

// psql -c would read COPY FROM STDIN data from its own stdin; a task has no
// client, so it must fail clearly rather than load nothing.
func TestCopyFromStdinRefused(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	table := markerTable(t, su, "copy_stdin")
	jobid := submit(t, su, "COPY "+table+" FROM STDIN")
	errMsg := requireFailedWithSQLState(t, su, jobid, "0A000")
	require.True(t, strings.HasPrefix(errMsg, "ERROR:  COPY FROM STDIN is not supported in a background task\nDETAIL:  "), errMsg)
}
