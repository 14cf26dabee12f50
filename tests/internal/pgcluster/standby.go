package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Standby is a streaming-replication hot standby of a local cluster. The
// embedded Cluster is the standby server itself (DSN, Connect, Exec, Log,
// Stop, StartServer, Close all act on it); after Promote it is a primary.
type Standby struct {
	*Cluster
	primary *Cluster
}

// pollInterval is how often WaitCaughtUp and Promote look again.
const pollInterval = 10 * time.Millisecond

// StartStandby takes a base backup of c (pg_basebackup -R -X stream) into a
// temporary directory of its own and starts it as a hot standby streaming
// from c, on its own port and socket directory, with c's settings
// (shared_preload_libraries included). It returns once the standby accepts
// connections. Local backend only: the docker backend returns
// ErrNotSupported. The caller must Close the standby.
//
// The primary needs a replication connection over its socket: initdb's
// pg_hba.conf has "local replication all trust", and wal_level = replica and
// max_wal_senders = 10 are the defaults.
func (c *Cluster) StartStandby(ctx context.Context) (_ *Standby, err error) {
	primary, ok := c.b.(*localBackend)
	if !ok {
		return nil, fmt.Errorf("pgcluster: a standby is %w", ErrNotSupported)
	}
	l, err := newStandbyBackend(primary)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = l.close(context.WithoutCancel(ctx))
		}
	}()

	if err := l.baseBackup(ctx, primary); err != nil {
		return nil, err
	}
	if err := appendConf(l.dataDir, l.standbyConf()); err != nil {
		return nil, err
	}
	if err := l.start(ctx); err != nil {
		return nil, err
	}
	l.opts.Logf("pgcluster: standby of port %d running in %s (port %d)", primary.port, l.dir, l.port)
	return &Standby{Cluster: &Cluster{opts: *l.opts, b: l}, primary: c}, nil
}

// newStandbyBackend makes the temporary directory of a standby of primary
// (given to the postgres OS user when the primary's is), with a free port.
func newStandbyBackend(primary *localBackend) (*localBackend, error) {
	port, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: pick a free port: %w", err)
	}
	dir, err := os.MkdirTemp("/tmp", "lantern_async_standby_")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	opts := *primary.opts
	l := &localBackend{
		opts:       &opts,
		bindir:     primary.bindir,
		dir:        dir,
		dataDir:    filepath.Join(dir, "data"),
		logFile:    filepath.Join(dir, "server.log"),
		port:       port,
		asPostgres: primary.asPostgres,
	}
	if l.asPostgres {
		if err := chownToPostgres(dir); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	return l, nil
}

// baseBackup copies primary into l.dataDir (which pg_basebackup creates).
// -R writes standby.signal and primary_conninfo (primary's socket and port);
// -X stream makes the copy consistent without archiving.
func (l *localBackend) baseBackup(ctx context.Context, primary *localBackend) error {
	out, err := l.run(ctx, "pg_basebackup",
		"-D", l.dataDir, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
		"-h", primary.dir, "-p", strconv.Itoa(primary.port), "-U", "postgres")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_basebackup from port %d: %w\n%s", primary.port, err, out)
	}
	return nil
}

// standbyConf overrides what the copied postgresql.conf says about where
// the primary listens: the last setting of a name in the file wins.
func (l *localBackend) standbyConf() string {
	var conf strings.Builder
	conf.WriteString("\n# added by the lantern_async test harness for the standby\n")
	fmt.Fprintf(&conf, "port = %d\n", l.port)
	fmt.Fprintf(&conf, "unix_socket_directories = %s\n", quote(l.dir))
	conf.WriteString("hot_standby = on\n")
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

// Primary returns the cluster the standby was copied from.
func (s *Standby) Primary() *Cluster { return s.primary }

// WaitCaughtUp waits, for at most timeout, until the standby has replayed
// all the WAL the primary had written when it was called, and returns that
// position. The primary must be running.
func (s *Standby) WaitCaughtUp(ctx context.Context, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	target, err := primaryWALPosition(ctx, s.primary)
	if err != nil {
		return "", err
	}
	var replayed string
	err = pollUntil(ctx, func() (bool, error) {
		var done bool
		err := s.queryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn()::text, ''), "+
			"coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", []any{target}, &replayed, &done)
		return done, err
	})
	if err != nil {
		return "", fmt.Errorf("pgcluster: standby has replayed up to %q, not up to the primary's %s: %w",
			replayed, target, err)
	}
	return target, nil
}

// primaryWALPosition returns the primary's pg_current_wal_lsn() after a
// transaction with an xid has committed: its commit is flushed
// synchronously, which flushes every record before it too (asynchronous
// commits included), so the position covers all that was written so far
// and the walsender can send it.
func primaryWALPosition(ctx context.Context, primary *Cluster) (string, error) {
	conn, err := primary.Connect(ctx, "postgres", "postgres")
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return "", fmt.Errorf("pgcluster: primary: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		return "", fmt.Errorf("pgcluster: primary: %w", err)
	}
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "", fmt.Errorf("pgcluster: primary: pg_current_wal_lsn(): %w", err)
	}
	return lsn, nil
}

// Promote runs pg_ctl promote and waits until pg_is_in_recovery() is false
// (at most opTimeout). The primary should be stopped first, or both would
// accept writes.
func (s *Standby) Promote(ctx context.Context) error {
	l := s.b.(*localBackend)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if out, err := l.run(ctx, "pg_ctl", "-D", l.dataDir, "-w", "-t", "60", "promote"); err != nil {
		return fmt.Errorf("pgcluster: pg_ctl promote: %w\n%s", err, out)
	}
	err := pollUntil(ctx, func() (bool, error) {
		var inRecovery bool
		err := s.queryRow(ctx, "SELECT pg_is_in_recovery()", nil, &inRecovery)
		return !inRecovery, err
	})
	if err != nil {
		return fmt.Errorf("pgcluster: standby still in recovery after pg_ctl promote: %w", err)
	}
	return nil
}

// queryRow runs a one-row query on a fresh superuser connection to the
// standby (a fresh one each time, so that a connection refused during a
// state change is simply tried again).
func (s *Standby) queryRow(ctx context.Context, sql string, args []any, dest ...any) error {
	conn, err := s.Connect(ctx, "postgres", "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.QueryRow(ctx, sql, args...).Scan(dest...)
}

// pollUntil calls cond every pollInterval until it reports true or ctx
// ends; the error returned then is ctx's, joined with cond's last one.
func pollUntil(ctx context.Context, cond func() (bool, error)) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		done, err := cond()
		if done && err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-ticker.C:
		}
	}
}
