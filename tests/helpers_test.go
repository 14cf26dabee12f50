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
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
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

	// canceledMessage is the error_message of a task stopped by cancel_task.
	canceledMessage = "Canceled by user"
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

// skipOnDocker skips a test that needs something the docker backend cannot
// do (restarting the server, signalling its processes, a server without
// preload).
func skipOnDocker(t *testing.T, what string) {
	t.Helper()
	if cluster.Backend() == pgcluster.BackendDocker {
		t.Skipf("%s is %v", what, pgcluster.ErrNotSupported)
	}
}

// ---------------------------------------------------------------------------
// Connections and SQL

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

// ---------------------------------------------------------------------------
// Polling

// guarded wraps cond for assert.Eventually and assert.Never so that it never
// runs after the wait returned (testify may leave one evaluation in flight
// on timeout, which would then race with the caller on the same pgx
// connection). The wait must call stop when it returns; stop reports the
// description of what cond saw last.
func guarded(cond func() (bool, string)) (check func() bool, stop func() (last string)) {
	var (
		mu   sync.Mutex
		done bool
		last string
	)
	check = func() bool {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return false
		}
		var met bool
		met, last = cond()
		return met
	}
	stop = func() string {
		mu.Lock()
		defer mu.Unlock()
		done = true
		return last
	}
	return check, stop
}

// poll waits until cond is met (with the in-flight guard of guarded). The
// condition also returns a description of what it saw, reported on timeout.
func poll(t *testing.T, waitFor time.Duration, cond func() (bool, string), msgAndArgs ...any) (bool, string) {
	t.Helper()
	check, stop := guarded(cond)
	ok := assert.Eventually(t, check, waitFor, tick, msgAndArgs...)
	return ok, stop()
}

// never asserts cond stays false for d (with the in-flight guard of guarded).
func never(t *testing.T, d time.Duration, cond func() (bool, string), what string) bool {
	t.Helper()
	check, stop := guarded(cond)
	ok := assert.Never(t, check, d, tick, what)
	if last := stop(); !ok {
		t.Errorf("%s: observed %s", what, last)
	}
	return ok
}

// connLost is what a polling condition reports (with true, to stop
// polling) when its connection died, e.g. because the server crashed.
const connLost = "connection closed: the server crashed or restarted (see the server log)"

// whileConnected makes a polling condition that queries conn stop early,
// reporting connLost, once conn died.
func whileConnected(conn *pgx.Conn, cond func() (bool, string)) func() (bool, string) {
	return func() (bool, string) {
		if conn.IsClosed() {
			return true, connLost
		}
		return cond()
	}
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

// reconnecting turns cond into a polling condition that runs it on a
// superuser connection of its own, opened again whenever the last one
// failed (the server may be restarting, e.g. during crash recovery).
// closeConn must be called once polling is over.
func reconnecting(cond func(conn *pgx.Conn) (bool, string, error)) (_ func() (bool, string), closeConn func()) {
	var conn *pgx.Conn
	closeConn = func() {
		if conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
	}
	return func() (bool, string) {
		if conn == nil || conn.IsClosed() {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var err error
			if conn, err = cluster.Connect(c, dbName, superuser); err != nil {
				conn = nil
				return false, err.Error()
			}
		}
		met, seen, err := cond(conn)
		if err != nil {
			closeConn()
			return false, err.Error()
		}
		return met, seen
	}, closeConn
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
	cond, closeConn := reconnecting(func(conn *pgx.Conn) (bool, string, error) {
		n, err := countBackends(conn, backendDispatcher)
		return n == 1, fmt.Sprintf("%d processes with backend_type %q", n, backendDispatcher), err
	})
	defer closeConn()
	return poll(t, waitFor, cond, "exactly one "+backendDispatcher)
}

// ---------------------------------------------------------------------------
// Tasks

// queryRower is what submit needs: a *pgx.Conn or a pgx.Tx.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// submit queues query with lantern.async_task(query) through conn (a
// connection or an open transaction) and returns the jobid.
func submit(t *testing.T, conn queryRower, query string) int64 {
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

// isFinal reports whether status is one a task never leaves.
func isFinal(status string) bool {
	return status == "succeeded" || status == "failed" || status == "canceled"
}

// waitTask waits until the task has a final status ('succeeded', 'failed'
// or 'canceled'; as seen through conn, i.e. subject to row-level security)
// and returns its status and error_message ("" when NULL).
func waitTask(t *testing.T, conn *pgx.Conn, jobid int64) (status, errMsg string) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("task %d to reach a final status", jobid), whileConnected(conn, func() (bool, string) {
		var st, em *string
		err := conn.QueryRow(context.Background(),
			"SELECT status, error_message FROM lantern.tasks WHERE jobid = $1", jobid).Scan(&st, &em)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, "no row visible"
		}
		if err != nil {
			return false, "query error: " + err.Error()
		}
		if isFinal(deref(st)) {
			status, errMsg = deref(st), deref(em)
			return true, ""
		}
		return false, fmt.Sprintf("status=%q error_message=%q", deref(st), deref(em))
	}))
	return status, errMsg
}

// requireSucceeded waits for each task and asserts it succeeded.
func requireSucceeded(t *testing.T, conn *pgx.Conn, jobids ...int64) {
	t.Helper()
	for _, jobid := range jobids {
		status, errMsg := waitTask(t, conn, jobid)
		require.Equal(t, "succeeded", status, "task %d error_message: %s", jobid, errMsg)
	}
}

// requireFailed waits for the task, asserts it failed and returns error_message.
func requireFailed(t *testing.T, conn *pgx.Conn, jobid int64) string {
	t.Helper()
	status, errMsg := waitTask(t, conn, jobid)
	require.Equal(t, "failed", status, "task %d", jobid)
	return errMsg
}

// requireFailedWithSQLState is requireFailed that also asserts the task's
// lantern.task_errors.sqlstate.
func requireFailedWithSQLState(t *testing.T, conn *pgx.Conn, jobid int64, sqlstate string) string {
	t.Helper()
	errMsg := requireFailed(t, conn, jobid)
	require.Equal(t, sqlstate, taskSQLState(t, jobid),
		"lantern.task_errors.sqlstate of task %d (error_message %q)", jobid, errMsg)
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

// countTasks counts every row of lantern.tasks (su: a superuser connection).
func countTasks(t *testing.T, su *pgx.Conn) int {
	t.Helper()
	return queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks")
}

// statusesOf returns the statuses of ids (in the order of ids) from one
// snapshot.
func statusesOf(conn *pgx.Conn, ids []int64) ([]string, error) {
	return queryRows[string](conn, `
		SELECT coalesce(t.status, '<NULL>')
		FROM unnest($1::bigint[]) WITH ORDINALITY AS u(jobid, n)
		LEFT JOIN lantern.tasks t USING (jobid)
		ORDER BY u.n`, ids)
}

// statusesAndWorkers returns the statuses of ids and the number of worker
// processes.
func statusesAndWorkers(conn *pgx.Conn, ids []int64) ([]string, int, error) {
	st, err := statusesOf(conn, ids)
	if err != nil {
		return nil, 0, err
	}
	workers, err := countBackends(conn, backendWorker)
	return st, workers, err
}

// countStatus counts the occurrences of status s in statuses.
func countStatus(statuses []string, s string) int {
	n := 0
	for _, x := range statuses {
		if x == s {
			n++
		}
	}
	return n
}

// allFinal reports whether every status of statuses is final.
func allFinal(statuses []string) bool {
	for _, s := range statuses {
		if !isFinal(s) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Canceling tasks

// cancelTask calls lantern.cancel_task(jobid) through conn.
func cancelTask(conn *pgx.Conn, jobid int64) (*bool, error) {
	var ok *bool
	err := conn.QueryRow(context.Background(), "SELECT lantern.cancel_task($1)", jobid).Scan(&ok)
	return ok, err
}

// requireCancelTask asserts cancel_task(jobid) through conn returns want.
func requireCancelTask(t *testing.T, conn *pgx.Conn, jobid int64, want bool) {
	t.Helper()
	got, err := cancelTask(conn, jobid)
	require.NoError(t, err, "lantern.cancel_task(%d)", jobid)
	require.NotNil(t, got, "lantern.cancel_task(%d) returned NULL", jobid)
	require.Equal(t, want, *got, "lantern.cancel_task(%d)", jobid)
}

// requireCanceled waits for the task (through conn) and asserts the whole
// outcome of a task stopped by cancel_task (see requireCanceledRow).
func requireCanceled(t *testing.T, conn *pgx.Conn, jobid int64, wantSQLState string) task {
	t.Helper()
	status, msg := waitTask(t, conn, jobid)
	require.Equal(t, "canceled", status, "task %d (error_message %q)", jobid, msg)
	r := getTask(t, nil, jobid)
	requireCanceledRow(t, r, wantSQLState)
	return r
}

// requireCanceledRow asserts r is the row of a task stopped by cancel_task:
// status, message, duration and (when wantSQLState is not empty) the
// lantern.task_errors row.
func requireCanceledRow(t *testing.T, r task, wantSQLState string) {
	t.Helper()
	require.Equal(t, "canceled", deref(r.Status), "status of task %d", r.JobID)
	require.Equal(t, canceledMessage, deref(r.ErrorMessage), "error_message of canceled task %d", r.JobID)
	require.NotNil(t, r.Duration, "duration of canceled task %d", r.JobID)
	require.GreaterOrEqual(t, *r.Duration, 0.0, "duration of canceled task %d", r.JobID)
	if wantSQLState != "" {
		require.Equal(t, wantSQLState, taskSQLState(t, r.JobID), "lantern.task_errors.sqlstate of canceled task %d", r.JobID)
	}
}

// ---------------------------------------------------------------------------
// Server processes

// backendPids lists the pids of the processes of a backend_type.
func backendPids(conn *pgx.Conn, backendType string) ([]int, error) {
	return queryRows[int](conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1", backendType)
}

// countBackends counts pg_stat_activity rows of a backend_type.
func countBackends(conn *pgx.Conn, backendType string) (int, error) {
	pids, err := backendPids(conn, backendType)
	return len(pids), err
}

// dispatcherPid returns the pid of the one dispatcher.
func dispatcherPid(t *testing.T, su *pgx.Conn) int {
	t.Helper()
	pids, err := backendPids(su, backendDispatcher)
	require.NoError(t, err)
	require.Len(t, pids, 1, "exactly one %s", backendDispatcher)
	return pids[0]
}

// waitWorkerCount waits until exactly want worker processes exist.
func waitWorkerCount(t *testing.T, su *pgx.Conn, want int, what string) {
	t.Helper()
	requirePoll(t, waitTimeout, what, whileConnected(su, func() (bool, string) {
		n, err := countBackends(su, backendWorker)
		return err == nil && n == want, fmt.Sprintf("%d workers, err=%v", n, err)
	}))
}

// activeWorkerPids lists the lantern_async workers that show query as
// 'active' in pg_stat_activity.
func activeWorkerPids(conn *pgx.Conn, query string) ([]int, error) {
	return queryRows[int](conn, `
		SELECT pid FROM pg_stat_activity
		WHERE backend_type = $1 AND state = 'active' AND query = $2`, backendWorker, query)
}

// workerPid returns the pid of the one active lantern_async worker whose
// pg_stat_activity.query is query.
func workerPid(t *testing.T, su *pgx.Conn, query string) int {
	t.Helper()
	pids, err := activeWorkerPids(su, query)
	require.NoError(t, err)
	require.Len(t, pids, 1, "exactly one worker runs %q", query)
	return pids[0]
}

// sleepQuery is a long query text unique to this test run, so that its
// pg_stat_activity row can be told apart.
func sleepQuery(seconds int, tag string) string {
	return fmt.Sprintf("SELECT pg_sleep(%d) /* %s */", seconds, uniq(tag))
}

// runningTask is a task a lantern_async worker is running.
type runningTask struct {
	id    int64
	query string
	pid   int // of the worker
}

// startTask submits query (a text unique to the test run, see sleepQuery)
// through conn and waits until the task is 'running' and a lantern_async
// worker shows its query as 'active' in pg_stat_activity.
func startTask(t *testing.T, su, conn *pgx.Conn, query string) runningTask {
	t.Helper()
	rt := runningTask{id: submit(t, conn, query), query: query}
	requirePoll(t, waitTimeout, fmt.Sprintf("task %d running in a %s", rt.id, backendWorker), whileConnected(su, func() (bool, string) {
		var st *string
		if err := su.QueryRow(context.Background(),
			"SELECT status FROM lantern.tasks WHERE jobid = $1", rt.id).Scan(&st); err != nil {
			return false, "read task: " + err.Error()
		}
		pids, err := activeWorkerPids(su, query)
		if err != nil {
			return false, err.Error()
		}
		if deref(st) == "running" && len(pids) == 1 {
			rt.pid = pids[0]
			return true, ""
		}
		return false, fmt.Sprintf("status=%q, active worker pids with the query: %v", deref(st), pids)
	}))
	// A test that fails half-way must not leave a long sleeper behind.
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cluster.Exec(c, dbName, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND query = $2`, rt.pid, query)
	})
	return rt
}

// stillRunning reports whether rt's worker still shows rt's query as 'active'.
func stillRunning(conn *pgx.Conn, rt runningTask) (bool, error) {
	var n int
	err := conn.QueryRow(context.Background(),
		"SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = $2",
		rt.pid, rt.query).Scan(&n)
	return n > 0, err
}

// stoppedRunning is a polling condition: rt's worker no longer runs rt's query.
func stoppedRunning(su *pgx.Conn, rt runningTask) func() (bool, string) {
	return whileConnected(su, func() (bool, string) {
		active, err := stillRunning(su, rt)
		if err != nil {
			return false, err.Error()
		}
		return !active, fmt.Sprintf("worker %d still active in %q", rt.pid, rt.query)
	})
}

// requireNoOrphans waits until every 'running' row has a live worker (a
// freshly claimed task is 'running' a moment before its worker reports the
// query, hence the wait). A worker is recognized by pg_stat_activity.query
// = tasks.query.
func requireNoOrphans(t *testing.T, su *pgx.Conn) {
	t.Helper()
	requirePoll(t, waitTimeout, "no 'running' task without an active worker", whileConnected(su, func() (bool, string) {
		ids, err := queryRows[int64](su, `
			SELECT t.jobid FROM lantern.tasks t
			WHERE t.status = 'running'
			  AND NOT EXISTS (SELECT FROM pg_stat_activity a
			                  WHERE a.backend_type = $1 AND a.state = 'active' AND a.query = t.query)
			ORDER BY t.jobid`, backendWorker)
		if err != nil {
			return false, err.Error()
		}
		return len(ids) == 0, fmt.Sprintf("'running' without a worker: %v", ids)
	}))
}

// ---------------------------------------------------------------------------
// Keeping workers busy

// advisoryLock is an advisory lock held by a connection of its own. A task
// running waitSQL() stays 'running' until release, which lets a test fill
// worker slots for as long as it needs them.
type advisoryLock struct {
	conn     *pgx.Conn
	key      int64
	released bool
}

// holdAdvisoryLock takes a fresh advisory lock. It is released when the
// test ends at the latest, so that a failing test leaves no task blocked.
func holdAdvisoryLock(t *testing.T) *advisoryLock {
	t.Helper()
	l := &advisoryLock{conn: connect(t, superuser), key: 7_000_000 + nameCounter.Add(1)}
	mustExec(t, l.conn, "SELECT pg_advisory_lock($1)", l.key)
	t.Cleanup(func() {
		if !l.released {
			_, _ = l.conn.Exec(context.Background(), "SELECT pg_advisory_unlock_all()")
		}
	})
	return l
}

// waitSQL is a statement that waits until the lock is released.
func (l *advisoryLock) waitSQL() string {
	return fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", l.key)
}

func (l *advisoryLock) release(t *testing.T) {
	t.Helper()
	mustExec(t, l.conn, "SELECT pg_advisory_unlock($1)", l.key)
	l.released = true
}

// blockWorkers occupies n worker slots with superuser tasks that wait on
// the lock, and returns their jobids once each one is waiting.
func (l *advisoryLock) blockWorkers(t *testing.T, su *pgx.Conn, n int) []int64 {
	t.Helper()
	var blockers []int64
	for range n {
		blockers = append(blockers, submit(t, su, l.waitSQL()))
	}
	l.waitBlocked(t, su, blockers)
	return blockers
}

// waitBlocked waits until the tasks ids are 'running' and each is waiting
// for the lock.
func (l *advisoryLock) waitBlocked(t *testing.T, su *pgx.Conn, ids []int64) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("%d blocker tasks running and waiting on the advisory lock", len(ids)),
		whileConnected(su, func() (bool, string) {
			st, err := statusesOf(su, ids)
			if err != nil {
				return false, err.Error()
			}
			var waiting int
			if err := su.QueryRow(context.Background(), `
				SELECT count(*) FROM pg_locks
				WHERE locktype = 'advisory' AND NOT granted
				  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`,
				l.key).Scan(&waiting); err != nil {
				return false, err.Error()
			}
			return countStatus(st, "running") == len(ids) && waiting == len(ids),
				fmt.Sprintf("statuses %v, %d waiting on the lock", st, waiting)
		}))
}

// ---------------------------------------------------------------------------
// Tables and roles

// tableExists reports whether a relation named name exists.
func tableExists(t *testing.T, name string) bool {
	t.Helper()
	return queryOne[bool](t, connect(t, superuser), "SELECT to_regclass($1) IS NOT NULL", name)
}

// tableOwner returns the owner of table public.tbl.
func tableOwner(t *testing.T, su *pgx.Conn, tbl string) string {
	t.Helper()
	return queryOne[string](t, su,
		"SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", tbl)
}

// markerTable creates a table marker(a int) for tasks to leave a trace in,
// readable and insertable by roles.
func markerTable(t *testing.T, su *pgx.Conn, base string, roles ...string) string {
	t.Helper()
	tbl := ident(t, uniq(base))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", tbl))
	if len(roles) > 0 {
		mustExec(t, su, fmt.Sprintf("GRANT SELECT, INSERT ON %s TO %s", tbl, strings.Join(roles, ", ")))
	}
	return tbl
}

// markerInsert is a task query that inserts v into a marker table.
func markerInsert(marker string, v int) string {
	return fmt.Sprintf("INSERT INTO %s VALUES (%d)", marker, v)
}

// markerValues returns the sorted contents of a marker table.
func markerValues(t *testing.T, marker string) []int {
	t.Helper()
	return queryAll[int](t, connect(t, superuser), fmt.Sprintf("SELECT a FROM %s ORDER BY a", marker))
}

// newLoginRole creates a fresh LOGIN role (fresh, so that no task of another
// test is ever queued for it).
func newLoginRole(t *testing.T, su *pgx.Conn, base string) string {
	t.Helper()
	r := ident(t, uniq(base))
	mustExec(t, su, fmt.Sprintf("CREATE ROLE %s LOGIN", r))
	return r
}
