package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// localBackend runs initdb/pg_ctl from `pg_config --bindir`.
type localBackend struct {
	opts    *Options
	bindir  string
	dir     string // temporary directory; also the unix socket directory
	dataDir string
	logFile string
	port    int

	asPostgres bool // run server binaries through runuser -u postgres

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

func startLocal(ctx context.Context, opts *Options) (_ backend, err error) {
	bindir, err := PGConfig("bindir")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: pick a free port: %w", err)
	}
	dir, err := os.MkdirTemp("/tmp", "lantern_async_test_")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	l := &localBackend{
		opts:       opts,
		bindir:     bindir,
		dir:        dir,
		dataDir:    filepath.Join(dir, "data"),
		logFile:    filepath.Join(dir, "server.log"),
		port:       port,
		asPostgres: os.Geteuid() == 0,
	}
	defer func() {
		if err != nil {
			_ = l.close(context.WithoutCancel(ctx))
		}
	}()

	if err := os.Mkdir(l.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if l.asPostgres {
		if err := chownToPostgres(dir); err != nil {
			return nil, err
		}
	}

	if out, err := l.run(ctx, "initdb", "-D", l.dataDir, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C"); err != nil {
		return nil, fmt.Errorf("pgcluster: initdb: %w\n%s", err, out)
	}

	var conf strings.Builder
	conf.WriteString("\n# added by the lantern_async test harness\n")
	for _, kv := range opts.settings() {
		fmt.Fprintf(&conf, "%s = %s\n", kv[0], kv[1])
	}
	fmt.Fprintf(&conf, "listen_addresses = ''\n")
	fmt.Fprintf(&conf, "port = %d\n", l.port)
	fmt.Fprintf(&conf, "unix_socket_directories = %s\n", quote(l.dir))
	fmt.Fprintf(&conf, "fsync = off\n")
	for _, line := range opts.ExtraConf {
		conf.WriteString(line + "\n")
	}
	f, err := os.OpenFile(filepath.Join(l.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	_, werr := f.WriteString(conf.String())
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("pgcluster: write postgresql.conf: %w", werr)
	}

	if err := l.start(ctx); err != nil {
		return nil, err
	}
	opts.Logf("pgcluster: local server running in %s (port %d)", l.dir, l.port)
	return l, nil
}

// chownToPostgres gives the whole tree under dir to the postgres OS user.
func chownToPostgres(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("pgcluster: running as root needs the postgres OS user: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("pgcluster: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return fmt.Errorf("pgcluster: gid %q: %w", u.Gid, err)
	}
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("pgcluster: chown %s: %w", path, err)
		}
		return nil
	})
}

// run executes a PostgreSQL server binary (as the postgres OS user when root)
// and returns its combined output.
func (l *localBackend) run(ctx context.Context, name string, args ...string) (string, error) {
	path := filepath.Join(l.bindir, name)
	var cmd *exec.Cmd
	if l.asPostgres {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = l.dir
	cmd.Env = serverEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves the postmaster running; it must not keep our
	// pipes open, but bound the wait anyway.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	return out.String(), err
}

// serverEnv is the environment without libpq/server variables that could
// redirect the tools, plus a C locale.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LANG=C", "LC_ALL=C")
}

func (l *localBackend) dsn(database, user string) string {
	return fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable",
		dsnQuote(l.dir), l.port, dsnQuote(database), dsnQuote(user))
}

// dsnQuote quotes a libpq key/value connection string value.
func dsnQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func (l *localBackend) start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		return errors.New("pgcluster: server already running")
	}
	out, err := l.run(ctx, "pg_ctl", "-D", l.dataDir, "-l", l.logFile, "-w", "-t", "60", "start")
	if err != nil {
		log, _ := l.log()
		return fmt.Errorf("pgcluster: pg_ctl start: %w\n%s\n--- server log ---\n%s", err, out, log)
	}
	l.running = true
	return nil
}

func (l *localBackend) stop(ctx context.Context, mode StopMode) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.running {
		return errors.New("pgcluster: server is not running")
	}
	out, err := l.run(ctx, "pg_ctl", "-D", l.dataDir, "-m", string(mode), "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	l.running = false
	return nil
}

func (l *localBackend) log() (string, error) {
	b, err := os.ReadFile(l.logFile)
	return string(b), err
}

func (l *localBackend) close(ctx context.Context) error {
	var errs []error
	l.mu.Lock()
	running := l.running
	l.mu.Unlock()
	if running {
		if err := l.stop(ctx, Immediate); err != nil {
			errs = append(errs, err)
		}
	} else if _, err := os.Stat(filepath.Join(l.dataDir, "postmaster.pid")); err == nil {
		// A half-started server (e.g. pg_ctl start timed out).
		_, _ = l.run(ctx, "pg_ctl", "-D", l.dataDir, "-m", "immediate", "-w", "-t", "60", "stop")
	}
	if keep := os.Getenv(EnvKeep); keep != "" && keep != "0" {
		l.opts.Logf("pgcluster: keeping %s (%s is set)", l.dir, EnvKeep)
	} else if err := os.RemoveAll(l.dir); err != nil {
		errs = append(errs, fmt.Errorf("pgcluster: remove %s: %w", l.dir, err))
	}
	return errors.Join(errs...)
}
