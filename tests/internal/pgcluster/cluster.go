// Package pgcluster starts a throw-away PostgreSQL 15 server for the
// lantern_async integration tests.
//
// Two backends are available, selected with the environment variable
// LANTERN_ASYNC_TEST_BACKEND:
//
//   - "local" (default): initdb + pg_ctl from `pg_config --bindir` in a
//     temporary directory. When the test runs as root the server is run as the
//     "postgres" OS user (via runuser), because PostgreSQL refuses to run as root.
//   - "docker": an image built from tests/docker/Dockerfile with
//     testcontainers-go. Stop/Start/Restart are not supported by this backend.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
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

// ErrNotSupported is returned by operations a backend cannot perform
// (Stop/Start/Restart on the docker backend).
var ErrNotSupported = errors.New("not supported by the docker backend")

// Options configure a cluster. The zero value is usable.
type Options struct {
	// Backend overrides LANTERN_ASYNC_TEST_BACKEND when non-empty.
	Backend string
	// NoPreload leaves shared_preload_libraries (and the lantern_async.*
	// settings) out of the configuration. Only meant for checking the harness
	// itself when the extension is not installed. Local backend only.
	NoPreload bool
	// MaxWorkers is lantern_async.max_workers (default 4).
	MaxWorkers int
	// Database is lantern_async.database, the one database served (default
	// empty: every database).
	Database string
	// ExtraConf holds additional postgresql.conf lines (local backend) or
	// "name=value" settings passed with -c (docker backend).
	ExtraConf []string
	// RepoRoot is the docker build context (default: the repository root,
	// derived from this source file's location).
	RepoRoot string
	// StartTimeout bounds the server (or image build + container) start.
	// Default 60 s for local, 15 min for docker.
	StartTimeout time.Duration
	// Logf receives progress messages (optional).
	Logf func(format string, args ...any)
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

// backend is implemented by the local and docker backends.
type backend interface {
	dsn(database, user string) string
	stop(ctx context.Context, mode StopMode) error
	start(ctx context.Context) error
	log() (string, error)
	close(ctx context.Context) error
}

// Cluster is a running PostgreSQL server.
type Cluster struct {
	opts Options
	b    backend
}

// Start creates and starts a cluster. The caller must Close it.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts.fill()
	var (
		b   backend
		err error
	)
	switch opts.Backend {
	case BackendLocal:
		b, err = startLocal(ctx, &opts)
	case BackendDocker:
		b, err = startDocker(ctx, &opts)
	default:
		return nil, fmt.Errorf("pgcluster: unknown backend %q (%s must be %q or %q)",
			opts.Backend, EnvBackend, BackendLocal, BackendDocker)
	}
	if err != nil {
		return nil, err
	}
	return &Cluster{opts: opts, b: b}, nil
}

// Backend returns the backend name ("local" or "docker").
func (c *Cluster) Backend() string { return c.opts.Backend }

// MaxWorkers returns the configured lantern_async.max_workers.
func (c *Cluster) MaxWorkers() int { return c.opts.MaxWorkers }

// DSN returns a libpq key/value connection string for database and user.
func (c *Cluster) DSN(database, user string) string { return c.b.dsn(database, user) }

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
// "smart"). The docker backend returns ErrNotSupported.
func (c *Cluster) Stop(mode StopMode) error {
	if !mode.valid() {
		return fmt.Errorf("pgcluster: invalid stop mode %q", mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return c.b.stop(ctx, mode)
}

// StartServer starts a stopped server again. The docker backend returns
// ErrNotSupported.
func (c *Cluster) StartServer() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return c.b.start(ctx)
}

// Restart stops the server with mode and starts it again. The docker backend
// returns ErrNotSupported.
func (c *Cluster) Restart(mode StopMode) error {
	if err := c.Stop(mode); err != nil {
		return err
	}
	return c.StartServer()
}

// Log returns the whole server log. Errors reading it are returned inline.
func (c *Cluster) Log() string {
	s, err := c.b.log()
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

// Close stops the server and removes everything it created (the temporary
// directory, or the container). Set LANTERN_ASYNC_TEST_KEEP=1 to keep the
// local backend's directory.
func (c *Cluster) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return c.b.close(ctx)
}
