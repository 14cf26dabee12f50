package tests

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Shared test helpers are split by subject: helpers_sql_test.go (connections,
// SQL), helpers_poll_test.go (waiting), helpers_tasks_test.go (tasks and
// canceling), helpers_process_test.go (server processes, advisory locks),
// helpers_objects_test.go (tables, roles). This file has the constants and
// what every test runs: begin and the health check.

const (
	// waitTimeout bounds every wait for an asynchronous outcome.
	waitTimeout = 30 * time.Second
	// tick is the polling interval of the waits.
	tick = 25 * time.Millisecond
	// logTailLines is how much of the server log failure messages show.
	logTailLines = 60

	backendLauncher = "lantern_async launcher"
	backendWorker   = "lantern_async worker"

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
// launcher is alive.
func begin(t *testing.T) {
	t.Helper()
	if ok, last := serverReady(t, waitTimeout); !ok {
		t.Fatalf("server not ready before the test: %s\n--- server log (last %d lines) ---\n%s",
			last, logTailLines, cluster.LogTail(logTailLines))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- lantern_async processes now ---\n%s", ourActivity())
			t.Logf("--- server log (last %d lines) ---\n%s", logTailLines, cluster.LogTail(logTailLines))
			if crashes := crashMarkers(cluster.Log()); crashes != "" {
				t.Logf("--- crash markers in the whole server log ---\n%s", crashes)
			}
		}
	})
	t.Cleanup(func() { requireHealthy(t) })
}

// ---------------------------------------------------------------------------
// Health of the server between tests

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

// ourActivity describes, for a failed test's log, what each lantern_async
// process is doing and what the queues hold, from a fresh connection.
func ourActivity() string {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := cluster.Connect(c, dbName, superuser)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(context.Background())
	rows, err := queryRows[string](conn, `
		SELECT format('%s pid %s in %s as %s (%s), started %s ago, in a transaction for %s',
			backend_type, pid, coalesce(datname::text, '-'), coalesce(usename::text, '-'),
			application_name, date_trunc('ms', clock_timestamp() - backend_start),
			coalesce(date_trunc('ms', clock_timestamp() - xact_start)::text, '-'))
		FROM pg_stat_activity WHERE backend_type LIKE 'lantern_async%' ORDER BY pid`)
	if err != nil {
		return err.Error()
	}
	pending, err := queryRows[string](conn, `
		SELECT format('%s of %s in %s', status, username, current_database()) FROM lantern.tasks
		WHERE status IN ('pending', 'running') ORDER BY jobid`)
	if err != nil {
		pending = []string{err.Error()}
	}
	return strings.Join(rows, "\n") + "\nunfinished tasks in " + dbName + ": " + strings.Join(pending, "; ")
}

// requireHealthy checks that exactly one launcher is alive (it may be
// restarting for a moment, so this waits a little).
func requireHealthy(t *testing.T) {
	t.Helper()
	if ok, last := serverReady(t, 10*time.Second); !ok {
		t.Errorf("health check after %s: want exactly one %q in pg_stat_activity, last saw: %s",
			t.Name(), backendLauncher, last)
	}
}

// serverReady waits until the server accepts connections and exactly one
// launcher runs (reconnecting as needed, e.g. during crash recovery).
func serverReady(t *testing.T, waitFor time.Duration) (bool, string) {
	t.Helper()
	cond, closeConn := reconnecting(func(conn *pgx.Conn) (bool, string, error) {
		n, err := countBackends(conn, backendLauncher)
		return n == 1, fmt.Sprintf("%d processes with backend_type %q", n, backendLauncher), err
	})
	defer closeConn()
	return poll(t, waitFor, cond, "exactly one "+backendLauncher)
}
