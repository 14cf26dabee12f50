package pgcluster

import (
	"context"
	"errors"
	"fmt"
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
// temporary directory of its own, on c's machine, and starts it as a hot
// standby streaming from c, on its own port and socket directory, with c's
// settings (shared_preload_libraries included). It returns once the standby
// accepts connections. The caller must Close the standby.
//
// The primary needs a replication connection over its socket: initdb's
// pg_hba.conf has "local replication all trust", and wal_level = replica and
// max_wal_senders = 10 are the defaults.
func (c *Cluster) StartStandby(ctx context.Context) (_ *Standby, err error) {
	primary := c.s
	opts := *primary.opts
	// The standby's close releases the machine: count it first.
	primary.m.share()
	s, err := newServer(ctx, primary.m, &opts, "lantern_async_standby_")
	if err != nil {
		_ = primary.m.release(context.WithoutCancel(ctx))
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.close(context.WithoutCancel(ctx))
		}
	}()

	if err := s.baseBackup(ctx, primary); err != nil {
		return nil, err
	}
	if err := appendConf(s.dataDir, s.standbyConf()); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	opts.Logf("pgcluster: standby of port %d running in %s (port %d)", primary.port, s.dir, s.port)
	return &Standby{Cluster: &Cluster{opts: opts, s: s}, primary: c}, nil
}

// baseBackup copies primary into s.dataDir (which pg_basebackup creates).
// -R writes standby.signal and primary_conninfo (primary's socket and port);
// -X stream makes the copy consistent without archiving.
func (s *server) baseBackup(ctx context.Context, primary *server) error {
	out, err := s.run(ctx, "pg_basebackup",
		"-D", s.dataDir, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
		"-h", primary.dir, "-p", strconv.Itoa(primary.port), "-U", "postgres")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_basebackup from port %d: %w\n%s", primary.port, err, out)
	}
	return nil
}

// standbyConf overrides what the copied postgresql.conf says about where
// the primary listens: the last setting of a name in the file wins.
func (s *server) standbyConf() string {
	var conf strings.Builder
	conf.WriteString("\n# added by the lantern_async test harness for the standby\n")
	fmt.Fprintf(&conf, "port = %d\n", s.port)
	fmt.Fprintf(&conf, "unix_socket_directories = %s\n", quote(s.dir))
	conf.WriteString("hot_standby = on\n")
	return conf.String()
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
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if out, err := s.s.run(ctx, "pg_ctl", "-D", s.s.dataDir, "-w", "-t", "60", "promote"); err != nil {
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
