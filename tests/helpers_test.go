package tests

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	// waitTimeout bounds every wait for an asynchronous outcome.
	waitTimeout = 30 * time.Second
	// tick is the polling interval of the waits.
	tick = 25 * time.Millisecond
	// logTailLines is how much of the server log failure messages show.
	logTailLines = 60

	backendDispatcher = "lantern_async dispatcher"
	backendWorker     = "lantern_async worker"
)

var nameCounter atomic.Int64

// uniq returns base with a process-wide unique numeric suffix, for table and
// role names that must not collide between tests (or between -count runs).
func uniq(base string) string {
	return fmt.Sprintf("%s_%d", base, nameCounter.Add(1))
}

// begin must be the first call of every test: it waits until the server is
// ready (so that the crash of an earlier test does not fail this one), on
// failure it appends the server log tail, and after the test it checks the
// dispatcher is alive.
func begin(t *testing.T) {
	t.Helper()
	if ok, last := serverReady(t, waitTimeout); !ok {
		t.Fatalf("server not ready before the test: %s\n--- server log (last %d lines) ---\n%s",
			last, logTailLines, cluster.LogTail(logTailLines))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- server log (last %d lines) ---\n%s", logTailLines, cluster.LogTail(logTailLines))
			if crashes := crashMarkers(cluster.Log()); crashes != "" {
				t.Logf("--- crash markers in the whole server log ---\n%s", crashes)
			}
		}
	})
	t.Cleanup(func() { requireHealthy(t) })
}

// ctx returns a context for test-body database calls.
func ctx(t *testing.T) context.Context {
	return t.Context()
}

// connect opens a connection to the lantern_async database as user; it is
// closed when the test ends.
func connect(t *testing.T, user string) *pgx.Conn {
	t.Helper()
	return connectDB(t, dbName, user)
}

func connectDB(t *testing.T, db, user string) *pgx.Conn {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := cluster.Connect(c, db, user)
	require.NoError(t, err)
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close(c)
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

// submit queues query with lantern.async_task(query) and returns the jobid.
func submit(t *testing.T, conn *pgx.Conn, query string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(ctx(t), "SELECT lantern.async_task($1)", query).Scan(&id),
		"async_task(%q)", query)
	return id
}

// submitNamed uses the two-argument form lantern.async_task(query, job_name).
func submitNamed(t *testing.T, conn *pgx.Conn, query, jobName string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(ctx(t), "SELECT lantern.async_task($1, $2)", query, jobName).Scan(&id),
		"async_task(%q, %q)", query, jobName)
	return id
}

// poll wraps assert.Eventually so that the condition never runs after poll
// returned (testify may leave one evaluation in flight on timeout, which
// would then race with the caller on the same pgx connection). The
// condition also returns a description of what it saw, reported on timeout.
func poll(t *testing.T, waitFor time.Duration, cond func() (bool, string), msgAndArgs ...any) (bool, string) {
	t.Helper()
	var (
		mu   sync.Mutex
		done bool
		last string
	)
	ok := assert.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return false
		}
		var met bool
		met, last = cond()
		return met
	}, waitFor, tick, msgAndArgs...)
	mu.Lock()
	done = true
	defer mu.Unlock()
	return ok, last
}

// connLost is what a polling condition reports (with true, to stop
// polling) when its connection died, e.g. because the server crashed.
const connLost = "connection closed: the server crashed or restarted (see the server log)"

// lost reports whether conn died; conditions use it to stop polling early.
func lost(conn *pgx.Conn) (bool, string) {
	if conn.IsClosed() {
		return true, connLost
	}
	return false, ""
}

// requirePoll is poll that stops the test on timeout or when the condition
// reported connLost.
func requirePoll(t *testing.T, waitFor time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ok, last := poll(t, waitFor, cond, what)
	if !ok {
		t.Fatalf("timed out after %s waiting for %s; last observation: %s", waitFor, what, last)
	}
	if last == connLost {
		t.Fatalf("while waiting for %s: %s", what, connLost)
	}
}

var crashRe = regexp.MustCompile(`terminated by signal|PANIC:|SIGSEGV|SIGABRT|fatal error:|^panic:|server process .* was terminated|all server processes terminated|signal arrived during`)

// crashMarkers extracts the lines of the server log that reveal a crash of
// a server process (and the first line of each Go stack following one).
func crashMarkers(log string) string {
	var out []string
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		if !crashRe.MatchString(l) {
			continue
		}
		out = append(out, l)
		if strings.Contains(l, "signal arrived during") {
			// The Go runtime's stack follows: keep the top frames.
			for j := i + 1; j < len(lines) && j <= i+8; j++ {
				out = append(out, "    "+lines[j])
			}
		}
	}
	if len(out) > 80 {
		out = append(out[:80], fmt.Sprintf("... (%d more)", len(out)-80))
	}
	return strings.Join(out, "\n")
}

// never asserts cond stays false for d (same in-flight guard as poll).
func never(t *testing.T, d time.Duration, cond func() (bool, string), what string) bool {
	t.Helper()
	var (
		mu   sync.Mutex
		done bool
		last string
	)
	ok := assert.Never(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return false
		}
		var met bool
		met, last = cond()
		return met
	}, d, tick, what)
	mu.Lock()
	done = true
	defer mu.Unlock()
	if !ok {
		t.Errorf("%s: observed %s", what, last)
	}
	return ok
}

// waitTask waits until the task is 'succeeded' or 'failed' (as seen through
// conn, i.e. subject to row-level security) and returns its status and
// error_message ("" when NULL).
func waitTask(t *testing.T, conn *pgx.Conn, jobid int64) (status, errMsg string) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("task %d to finish", jobid), func() (bool, string) {
		if l, msg := lost(conn); l {
			return l, msg
		}
		var st, em *string
		err := conn.QueryRow(context.Background(),
			"SELECT status, error_message FROM lantern.tasks WHERE jobid = $1", jobid).Scan(&st, &em)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, "no row visible"
		}
		if err != nil {
			return false, "query error: " + err.Error()
		}
		s := deref(st)
		if s == "succeeded" || s == "failed" {
			status, errMsg = s, deref(em)
			return true, ""
		}
		return false, fmt.Sprintf("status=%q error_message=%q", s, deref(em))
	})
	return status, errMsg
}

// requireSucceeded waits for the task and asserts it succeeded.
func requireSucceeded(t *testing.T, conn *pgx.Conn, jobid int64) {
	t.Helper()
	status, errMsg := waitTask(t, conn, jobid)
	require.Equal(t, "succeeded", status, "task %d error_message: %s", jobid, errMsg)
}

// requireFailed waits for the task, asserts it failed and returns error_message.
func requireFailed(t *testing.T, conn *pgx.Conn, jobid int64) string {
	t.Helper()
	status, errMsg := waitTask(t, conn, jobid)
	require.Equal(t, "failed", status, "task %d", jobid)
	return errMsg
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// task is a row of lantern.tasks (nullable columns are pointers; duration in
// seconds).
type task struct {
	JobID         int64
	Query         string
	PgCronJobName *string
	JobName       *string
	Username      string
	StartedAt     time.Time
	Duration      *float64
	Status        *string
	ErrorMessage  *string
}

const taskColumns = `jobid, query, pg_cron_job_name, job_name, username, started_at,
	extract(epoch FROM duration)::float8, status, error_message`

// getTask reads a row through conn (nil: a superuser connection).
func getTask(t *testing.T, conn *pgx.Conn, jobid int64) task {
	t.Helper()
	if conn == nil {
		conn = connect(t, superuser)
	}
	var r task
	err := conn.QueryRow(ctx(t), "SELECT "+taskColumns+" FROM lantern.tasks WHERE jobid = $1", jobid).Scan(
		&r.JobID, &r.Query, &r.PgCronJobName, &r.JobName, &r.Username, &r.StartedAt,
		&r.Duration, &r.Status, &r.ErrorMessage)
	require.NoError(t, err, "read task %d", jobid)
	return r
}

// taskSQLState returns lantern.task_errors.sqlstate for jobid ("" if no row).
func taskSQLState(t *testing.T, jobid int64) string {
	t.Helper()
	conn := connect(t, superuser)
	var s string
	err := conn.QueryRow(ctx(t), "SELECT sqlstate FROM lantern.task_errors WHERE jobid = $1", jobid).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	require.NoError(t, err)
	return s
}

// countBackends counts pg_stat_activity rows of a backend_type.
func countBackends(conn *pgx.Conn, backendType string) (int, error) {
	var n int
	err := conn.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = $1", backendType).Scan(&n)
	return n, err
}

// requireHealthy checks that exactly one dispatcher is alive (it may be
// restarting for a moment, so this waits a little).
func requireHealthy(t *testing.T) {
	t.Helper()
	if ok, last := serverReady(t, 10*time.Second); !ok {
		t.Errorf("health check after %s: want exactly one %q in pg_stat_activity, last saw: %s",
			t.Name(), backendDispatcher, last)
	}
}

// serverReady waits until the server accepts connections and exactly one
// dispatcher runs (reconnecting as needed, e.g. during crash recovery).
func serverReady(t *testing.T, waitFor time.Duration) (bool, string) {
	t.Helper()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	return poll(t, waitFor, func() (bool, string) {
		if conn == nil || conn.IsClosed() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var err error
			if conn, err = cluster.Connect(c, dbName, superuser); err != nil {
				conn = nil
				return false, err.Error()
			}
		}
		n, err := countBackends(conn, backendDispatcher)
		if err != nil {
			return false, err.Error()
		}
		return n == 1, fmt.Sprintf("%d processes with backend_type %q", n, backendDispatcher)
	}, "exactly one "+backendDispatcher)
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
