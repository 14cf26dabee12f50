package testkit

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

// Ctx returns a context for test-body database calls.
func Ctx(t *testing.T) context.Context {
	return t.Context()
}

// Connect opens a connection to the lantern_async database as user; it is
// closed when the test ends.
func Connect(t *testing.T, user string) *pgx.Conn {
	t.Helper()
	return ConnectTo(t, Cluster, DBName, user)
}

// ConnectTo opens a connection to database db of cluster c as user; it is
// closed when the test ends.
func ConnectTo(t *testing.T, c *pgcluster.Cluster, db, user string) *pgx.Conn {
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

// MustExec runs sql (a multi-statement string when there are no args).
func MustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	_, err := conn.Exec(Ctx(t), sql, args...)
	require.NoError(t, err, "exec %q", sql)
}

// QueryOne scans a single-row, single-column result.
func QueryOne[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, conn.QueryRow(Ctx(t), sql, args...).Scan(&v), "query %q", sql)
	return v
}

// QueryRows scans a single-column result; it does not need a *testing.T, so
// that polling conditions can use it.
func QueryRows[T any](conn *pgx.Conn, sql string, args ...any) ([]T, error) {
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[T])
}

// QueryAll is QueryRows that fails the test on an error.
func QueryAll[T any](t *testing.T, conn *pgx.Conn, sql string, args ...any) []T {
	t.Helper()
	vals, err := QueryRows[T](conn, sql, args...)
	require.NoError(t, err, "query %q", sql)
	return vals
}

// PgCode returns the SQLSTATE of a server error ("" otherwise).
func PgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// ErrorText renders a server error the way psql shows it (message, DETAIL,
// HINT); pgx's Error() carries the primary message only.
func ErrorText(err error) string {
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

// RequirePgError asserts err is a server error with SQLSTATE code.
func RequirePgError(t *testing.T, err error, code string, msgAndArgs ...any) *pgconn.PgError {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a server error with SQLSTATE %s, got %v", code, err)
	require.Equal(t, code, pgErr.Code, "SQLSTATE of %q", pgErr.Message)
	return pgErr
}

var IdentRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Ident guards the test-made identifiers spliced into SQL text.
func Ident(t *testing.T, name string) string {
	t.Helper()
	require.Regexp(t, IdentRE, name)
	return name
}

// Lit quotes a SQL string literal.
func Lit(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func Deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func FirstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// RequireSessionUsable asserts conn is outside any transaction block and
// still runs statements.
func RequireSessionUsable(t *testing.T, conn *pgx.Conn, when string) {
	t.Helper()
	require.Equal(t, "I", string(rune(conn.PgConn().TxStatus())),
		"transaction status %s (I: idle, E: in a failed transaction block)", when)
	require.Equal(t, 1, QueryOne[int](t, conn, "SELECT 1"), "a statement %s", when)
}
