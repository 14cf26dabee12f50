package tests

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// Connections and SQL.

// ctx returns a context for test-body database calls.
func ctx(t *testing.T) context.Context {
	return t.Context()
}

// connect opens a connection to the lantern_async database as user; it is
// closed when the test ends.
func connect(t *testing.T, user string) *pgx.Conn {
	t.Helper()
	return connectTo(t, cluster, dbName, user)
}

// connectTo opens a connection to database db of cluster c as user; it is
// closed when the test ends.
func connectTo(t *testing.T, c *pgcluster.Cluster, db, user string) *pgx.Conn {
	t.Helper()
	cc, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := c.Connect(cc, db, user)
	require.NoError(t, err)
	t.Cleanup(func() {
		cc, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close(cc)
	})
	return conn
}

// mustExec runs sql (a multi-statement string when there are no args).
func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	_, err := conn.Exec(ctx(t), sql, args...)
	require.NoError(t, err, "exec %q", sql)
}

// queryOne scans a single-row, single-column result.
func queryOne[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, conn.QueryRow(ctx(t), sql, args...).Scan(&v), "query %q", sql)
	return v
}

// queryRows scans a single-column result; it does not need a *testing.T, so
// that polling conditions can use it.
func queryRows[T any](conn *pgx.Conn, sql string, args ...any) ([]T, error) {
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[T])
}

// queryAll is queryRows that fails the test on an error.
func queryAll[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) []T {
	t.Helper()
	vals, err := queryRows[T](conn, sql, args...)
	require.NoError(t, err, "query %q", sql)
	return vals
}

// pgCode returns the SQLSTATE of a server error ("" otherwise).
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// errorText renders a server error the way psql shows it (message, DETAIL,
// HINT); pgx's Error() carries the primary message only.
func errorText(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err.Error()
	}
	s := pgErr.Severity + ":  " + pgErr.Message
	if pgErr.Detail != "" {
		s += "\nDETAIL:  " + pgErr.Detail
	}
	if pgErr.Hint != "" {
		s += "\nHINT:  " + pgErr.Hint
	}
	return s
}

// requirePgError asserts err is a server error with SQLSTATE code.
func requirePgError(t *testing.T, err error, code string, msgAndArgs ...any) *pgconn.PgError {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a server error with SQLSTATE %s, got %v", code, err)
	require.Equal(t, code, pgErr.Code, "SQLSTATE of %q", pgErr.Message)
	return pgErr
}

var identRe = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// ident guards the test-made identifiers spliced into SQL text.
func ident(t *testing.T, name string) string {
	t.Helper()
	require.Regexp(t, identRe, name)
	return name
}

// lit quotes a SQL string literal.
func lit(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
