package testkit

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

// The constants every package uses, and what every test runs: Begin and the
// health check between tests.

const (
	// LauncherNaptime is the launcher's longest sleep between rounds
	// (cgo/main.go): a quiet window one second longer shows that no round
	// starts anything on its own, and a start much sooner than it was woken for.
	LauncherNaptime = 10 * time.Second
	// WaitTimeout bounds every wait for an asynchronous outcome.
	WaitTimeout = 30 * time.Second
	// Tick is the polling interval of the waits.
	Tick = 25 * time.Millisecond
	// LogTailLines is how much of the server log failure messages show.
	LogTailLines = 60

	BackendLauncher = "lantern_async launcher"
	BackendWorker   = "lantern_async worker"

	// CanceledMessage is the error_message of a task stopped by cancel_task.
	CanceledMessage = "Canceled by user"
)

var NameCounter atomic.Int64

// Uniq returns base with a process-wide unique numeric suffix, for table and
// role names that must not collide between tests (or between -count runs).
func Uniq(base string) string {
	return fmt.Sprintf("%s_%d", base, NameCounter.Add(1))
}

// Begin must be the first call of every test: it waits until the server is
// ready (so that the crash of an earlier test does not fail this one), on
// failure it appends the server log tail, and after the test it checks the
// launcher is alive.
func Begin(t *testing.T) {
	t.Helper()
	if ok, last := ServerReady(t, WaitTimeout); !ok {
		t.Fatalf("server not ready before the test: %s\n--- server log (last %d lines) ---\n%s",
			last, LogTailLines, Cluster.LogTail(LogTailLines))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- lantern_async processes now ---\n%s", OurActivity())
			t.Logf("--- server log (last %d lines) ---\n%s", LogTailLines, Cluster.LogTail(LogTailLines))
			if crashes := CrashMarkers(Cluster.Log()); crashes != "" {
				t.Logf("--- crash markers in the whole server log ---\n%s", crashes)
			}
			// A tail full of a test's own errors hides the launcher's hold-backs.
			if lines := LauncherLines(Cluster.Log(), LogTailLines); lines != "" {
				t.Logf("--- the launcher's lines in the whole server log (last %d) ---\n%s", LogTailLines, lines)
			}
		}
	})
	t.Cleanup(func() { RequireHealthy(t) })
}

// ---------------------------------------------------------------------------
// Health of the server between tests

var CrashRE = regexp.MustCompile(`terminated by signal|PANIC:|SIGSEGV|SIGABRT|fatal error:|^panic:|server process .* was terminated|all server processes terminated|signal arrived during`)

// LauncherLines returns the last n lines of the server log that the
// launcher wrote (its hold-backs and what it could not do).
func LauncherLines(log string, n int) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, BackendLauncher+":") {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(len(out)-n, 0):], "\n")
}

// CrashMarkers extracts the lines of the server log that reveal a crash of
// a server process (and the first line of each Go stack following one).
func CrashMarkers(log string) string {
	var out []string
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		if !CrashRE.MatchString(l) {
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

// OurActivity describes, for a failed test's log, what each lantern_async
// process is doing and what the queues hold, from a fresh connection.
func OurActivity() string {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Cluster.Connect(c, DBName, Superuser)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(context.Background())
	rows, err := QueryRows[string](conn, `
		SELECT format('%s pid %s in %s as %s (%s), started %s ago, in a transaction for %s',
			backend_type, pid, coalesce(datname::text, '-'), coalesce(usename::text, '-'),
			application_name, date_trunc('ms', clock_timestamp() - backend_start),
			coalesce(date_trunc('ms', clock_timestamp() - xact_start)::text, '-'))
		FROM pg_stat_activity WHERE backend_type LIKE 'lantern_async%' ORDER BY pid`)
	if err != nil {
		return err.Error()
	}
	pending, err := QueryRows[string](conn, `
		SELECT format('%s of %s in %s', status, username, current_database()) FROM lantern.tasks
		WHERE status IN ('pending', 'running') ORDER BY jobid`)
	if err != nil {
		pending = []string{err.Error()}
	}
	return strings.Join(rows, "\n") + "\nunfinished tasks in " + DBName + ": " + strings.Join(pending, "; ")
}

// RequireHealthy checks that exactly one launcher is alive (it may be
// restarting for a moment, so this waits a little).
func RequireHealthy(t *testing.T) {
	t.Helper()
	if ok, last := ServerReady(t, 10*time.Second); !ok {
		t.Errorf("health check after %s: want exactly one %q in pg_stat_activity, last saw: %s",
			t.Name(), BackendLauncher, last)
	}
}

// ServerReady waits until the server accepts connections and exactly one
// launcher runs (reconnecting as needed, e.g. during crash recovery).
func ServerReady(t *testing.T, waitFor time.Duration) (bool, string) {
	t.Helper()
	cond, closeConn := Reconnecting(func(conn *pgx.Conn) (bool, string, error) {
		n, err := CountBackends(conn, BackendLauncher)
		return n == 1, fmt.Sprintf("%d processes with backend_type %q", n, BackendLauncher), err
	})
	defer closeConn()
	return Poll(t, waitFor, cond, "exactly one "+BackendLauncher)
}
