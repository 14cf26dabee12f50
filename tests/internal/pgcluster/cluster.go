// Package pgcluster starts throw-away PostgreSQL servers for the
// lantern_async integration tests.
//
// A cluster is always made the same way: initdb in a temporary directory,
// the harness's settings appended to postgresql.conf, pg_ctl to start and
// stop it, a unix socket in that directory. The environment variable
// LANTERN_ASYNC_TEST_BACKEND chooses where its programs run:
//
//   - "local" (default): this machine's, from `pg_config --bindir`. When the
//     test runs as root they run as the "postgres" OS user (via runuser),
//     because PostgreSQL refuses to run as root.
//   - "docker": those of the ready image (tests/docker/Dockerfile) for the
//     version in LANTERN_ASYNC_TEST_PG, built from the current tree with
//     testcontainers-go, run with docker exec in one container per test
//     process (see containerMachine). Everything the local backend can do,
//     this one can too: stop, restart, standbys, signals.
package pgcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables understood by the package.
const (
	// EnvBackend selects the backend: "local" (default) or "docker".
	EnvBackend = "LANTERN_ASYNC_TEST_BACKEND"
	// EnvKeep, when set to a non-empty value other than "0", keeps the
	// temporary directory of the local backend after Close (for debugging).
	EnvKeep = "LANTERN_ASYNC_TEST_KEEP"
)

// Backend names.
const (
	BackendLocal  = "local"
	BackendDocker = "docker"
)

// StopMode is a pg_ctl shutdown mode.
type StopMode string

// Shutdown modes accepted by Stop and Restart.
const (
	Smart     StopMode = "smart"
	Fast      StopMode = "fast"
	Immediate StopMode = "immediate"
)

func (m StopMode) valid() bool {
	return m == Smart || m == Fast || m == Immediate
}

// Options configure a cluster. The zero value is usable.
type Options struct {
	// Backend overrides LANTERN_ASYNC_TEST_BACKEND when non-empty.
	Backend string
	// NoPreload leaves shared_preload_libraries (and the lantern_async.*
	// settings) out of the configuration.
	NoPreload bool
	// MaxWorkers is lantern_async.max_workers (default 4).
	MaxWorkers int
	// Database is lantern_async.database, the one database served (default
	// empty: every database).
	Database string
	// ExtraConf holds additional postgresql.conf lines.
	ExtraConf []string
	// RepoRoot is the docker build context (default: the repository root,
	// derived from this source file's location).
	RepoRoot string
	// Logf receives progress messages (optional).
	Logf func(format string, args ...any)
	// OnDisk makes the local backend's cluster directory on a disk (/tmp,
	// unless LANTERN_ASYNC_TEST_TMPDIR names another), never in memory:
	// for figures that include WAL flushes (make bench, fsync on).
	OnDisk bool
}

func (o *Options) fill() {
	if o.Backend == "" {
		o.Backend = os.Getenv(EnvBackend)
	}
	if o.Backend == "" {
		o.Backend = BackendLocal
	}
	if o.MaxWorkers == 0 {
		o.MaxWorkers = 4
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// settings returns the server settings as name/value pairs, in order.
func (o *Options) settings() [][2]string {
	var s [][2]string
	if !o.NoPreload {
		s = append(s,
			[2]string{"shared_preload_libraries", "'lantern_async'"},
			[2]string{"lantern_async.max_workers", fmt.Sprint(o.MaxWorkers)},
		)
		if o.Database != "" {
			s = append(s, [2]string{"lantern_async.database", quote(o.Database)})
		}
	}
	s = append(s,
		[2]string{"max_worker_processes", "16"},
		[2]string{"log_min_messages", "info"},
	)
	return s
}

func quote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// Cluster is a running PostgreSQL server.
type Cluster struct {
	opts Options
	s    *server
}

// Start creates and starts a cluster. The caller must Close it.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts.fill()
	var (
		m   machine
		err error
	)
	switch opts.Backend {
	case BackendLocal:
		m, err = newLocalMachine()
	case BackendDocker:
		m, err = acquireContainer(ctx, &opts)
	default:
		return nil, fmt.Errorf("pgcluster: unknown backend %q (%s must be %q or %q)",
			opts.Backend, EnvBackend, BackendLocal, BackendDocker)
	}
	if err != nil {
		return nil, err
	}
	s, err := startServer(ctx, m, &opts)
	if err != nil {
		return nil, err
	}
	return &Cluster{opts: opts, s: s}, nil
}

// Backend returns the backend name ("local" or "docker").
func (c *Cluster) Backend() string { return c.opts.Backend }

// MaxWorkers returns the configured lantern_async.max_workers.
func (c *Cluster) MaxWorkers() int { return c.opts.MaxWorkers }

// DSN returns a libpq key/value connection string for database and user.
func (c *Cluster) DSN(database, user string) string { return c.s.dsn(database, user) }

// Connect opens a pgx connection to database as user.
func (c *Cluster) Connect(ctx context.Context, database, user string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, c.DSN(database, user))
	if err != nil {
		return nil, fmt.Errorf("pgcluster: connect to %s as %s: %w", database, user, err)
	}
	return conn, nil
}

// Exec runs sql in database as the bootstrap superuser "postgres" on a
// fresh connection. Without args a multi-statement string is allowed.
func (c *Cluster) Exec(ctx context.Context, database, sql string, args ...any) error {
	return c.ExecAs(ctx, database, "postgres", sql, args...)
}

// ExecAs is Exec as the given user.
func (c *Cluster) ExecAs(ctx context.Context, database, user, sql string, args ...any) error {
	conn, err := c.Connect(ctx, database, user)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgcluster: exec %q: %w", sql, err)
	}
	return nil
}

// opTimeout bounds Stop, StartServer, Restart and Close (pg_ctl itself
// waits at most 60 s per step).
const opTimeout = 3 * time.Minute

// Stop shuts the server down with the given mode ("fast", "immediate" or
// "smart").
func (c *Cluster) Stop(mode StopMode) error {
	if !mode.valid() {
		return fmt.Errorf("pgcluster: invalid stop mode %q", mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return c.s.stop(ctx, mode)
}

// StartServer starts a stopped server again.
func (c *Cluster) StartServer() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return c.s.start(ctx)
}

// Restart stops the server with mode and starts it again.
func (c *Cluster) Restart(mode StopMode) error {
	if err := c.Stop(mode); err != nil {
		return err
	}
	return c.StartServer()
}

// Log returns the whole server log. Errors reading it are returned inline.
func (c *Cluster) Log() string {
	s, err := c.s.log()
	if err != nil {
		return fmt.Sprintf("%s\n<error reading server log: %v>", s, err)
	}
	return s
}

// LogTail returns the last n lines of the server log.
func (c *Cluster) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(c.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Close stops the server and removes everything it created (its
// directory; the container with the last cluster in it). Set
// LANTERN_ASYNC_TEST_KEEP=1 to keep the directories.
func (c *Cluster) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return c.s.close(ctx)
}

// ServerDir makes an empty directory that the server's OS user owns, where
// the server can reach it (for CREATE TABLESPACE, say). The caller removes it.
func (c *Cluster) ServerDir(prefix string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	dir, err := os.MkdirTemp(c.s.m.tempRoot(c.s.opts.OnDisk), prefix)
	if err != nil {
		return "", fmt.Errorf("pgcluster: %w", err)
	}
	if err := c.s.m.own(ctx, dir); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// ServerCPU is the processor time the running server has used: its
// postmaster's and every process the postmaster has reaped (backends,
// workers, checkpoints; a process still alive is not in it). Zero when the
// server is not running. A diagnostic of what a test costs (Linux /proc).
func (c *Cluster) ServerCPU() time.Duration {
	pid, err := os.ReadFile(filepath.Join(c.s.dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(pid), "\n")
	stat, err := os.ReadFile("/proc/" + strings.TrimSpace(first) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis: utime is the 14th
	// field of the line, then stime, cutime and cstime, in clock ticks.
	_, rest, ok := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, s := range f[11:15] {
		n, _ := strconv.ParseInt(s, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}
