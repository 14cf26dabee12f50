package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// server is one cluster: its directory (data, log, socket) on this machine,
// its programs run by m.
type server struct {
	opts    *Options
	m       machine
	dir     string // temporary directory; also the unix socket directory
	dataDir string
	logFile string
	port    int

	mu      sync.Mutex
	running bool
}

// PGConfig returns the output of `pg_config --<what>` (PG_CONFIG overrides
// the pg_config binary).
func PGConfig(what string) (string, error) {
	bin := os.Getenv("PG_CONFIG")
	if bin == "" {
		bin = "pg_config"
	}
	out, err := exec.Command(bin, "--"+what).Output()
	if err != nil {
		return "", fmt.Errorf("pgcluster: %s --%s: %w", bin, what, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// FreePort returns a TCP port that was free a moment ago on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newServer makes a temporary directory for a cluster on m, owned by the
// server's OS user, and picks a free port. The port is only used to name
// the socket (listen_addresses is empty), so it need not be free inside a
// container: it keeps clusters sharing a directory tree apart.
func newServer(ctx context.Context, m machine, opts *Options, prefix string) (*server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: pick a free port: %w", err)
	}
	dir, err := os.MkdirTemp(m.tempRoot(opts.OnDisk), prefix)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	s := &server{
		opts:    opts,
		m:       m,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logFile: filepath.Join(dir, "server.log"),
		port:    port,
	}
	if err := m.own(ctx, dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// startServer runs initdb in a new directory on m, configures and starts
// the server. On error it releases m.
func startServer(ctx context.Context, m machine, opts *Options) (_ *server, err error) {
	s, err := newServer(ctx, m, opts, "lantern_async_test_")
	if err != nil {
		_ = m.release(context.WithoutCancel(ctx))
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.close(context.WithoutCancel(ctx))
		}
	}()

	if out, err := s.run(ctx, "initdb", "-D", s.dataDir, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C"); err != nil {
		return nil, fmt.Errorf("pgcluster: initdb: %w\n%s", err, out)
	}
	if err := appendConf(s.dataDir, s.conf()); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	opts.Logf("pgcluster: %s server running in %s (port %d)", opts.Backend, s.dir, s.port)
	return s, nil
}

// conf is what the harness appends to initdb's postgresql.conf.
func (s *server) conf() string {
	var conf strings.Builder
	conf.WriteString("\n# added by the lantern_async test harness\n")
	for _, kv := range s.opts.settings() {
		fmt.Fprintf(&conf, "%s = %s\n", kv[0], kv[1])
	}
	fmt.Fprintf(&conf, "listen_addresses = ''\n")
	fmt.Fprintf(&conf, "port = %d\n", s.port)
	fmt.Fprintf(&conf, "unix_socket_directories = %s\n", quote(s.dir))
	fmt.Fprintf(&conf, "fsync = off\n")
	for _, line := range s.opts.ExtraConf {
		conf.WriteString(line + "\n")
	}
	return conf.String()
}

// appendConf appends text to dataDir's postgresql.conf.
func appendConf(dataDir, text string) error {
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	_, werr := f.WriteString(text)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("pgcluster: write postgresql.conf: %w", werr)
	}
	return nil
}

// run runs a PostgreSQL program on the server's machine, in its directory.
func (s *server) run(ctx context.Context, program string, args ...string) (string, error) {
	return s.m.run(ctx, s.dir, program, args...)
}

func (s *server) dsn(database, user string) string {
	return fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable",
		dsnQuote(s.dir), s.port, dsnQuote(database), dsnQuote(user))
}

// dsnQuote quotes a libpq key/value connection string value.
func dsnQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func (s *server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return errors.New("pgcluster: server already running")
	}
	out, err := s.run(ctx, "pg_ctl", "-D", s.dataDir, "-l", s.logFile, "-w", "-t", "60", "start")
	if err != nil {
		log, _ := s.log()
		return fmt.Errorf("pgcluster: pg_ctl start: %w\n%s\n--- server log ---\n%s", err, out, log)
	}
	s.running = true
	return nil
}

func (s *server) stop(ctx context.Context, mode StopMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return errors.New("pgcluster: server is not running")
	}
	out, err := s.run(ctx, "pg_ctl", "-D", s.dataDir, "-m", string(mode), "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	s.running = false
	return nil
}

func (s *server) log() (string, error) {
	b, err := os.ReadFile(s.logFile)
	return string(b), err
}

// close stops the server, removes its directory and releases its machine.
func (s *server) close(ctx context.Context) error {
	var errs []error
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		if err := s.stop(ctx, Immediate); err != nil {
			errs = append(errs, err)
		}
	} else if _, err := os.Stat(filepath.Join(s.dataDir, "postmaster.pid")); err == nil {
		// A half-started server (e.g. pg_ctl start timed out).
		_, _ = s.run(ctx, "pg_ctl", "-D", s.dataDir, "-m", "immediate", "-w", "-t", "60", "stop")
	}
	if keep := os.Getenv(EnvKeep); keep != "" && keep != "0" {
		s.opts.Logf("pgcluster: keeping %s (%s is set)", s.dir, EnvKeep)
	} else if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("pgcluster: remove %s: %w", s.dir, err))
	}
	if err := s.m.release(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
