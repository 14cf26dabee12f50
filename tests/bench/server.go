package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
)

// Helpers shared by the measurements: settings, the extension's
// processes, submitting tasks and waiting for them. Waiting polls; nothing
// here times anything.

// poll calls cond every interval until it is true, it fails, or timeout.
func poll(ctx context.Context, interval, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: timed out after %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// pidsOf lists the pids of a backend_type.
func (b *bench) pidsOf(backendType string) ([]int, error) {
	rows, err := b.su.Query(b.ctx, "SELECT pid FROM pg_stat_activity WHERE backend_type = $1 ORDER BY pid", backendType)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// extProcs counts the extension's processes other than the launcher
// (workers and scouts) in pg_stat_activity.
func (b *bench) extProcs() (int, error) {
	var n int
	err := b.su.QueryRow(b.ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE backend_type LIKE 'lantern_async%' AND backend_type <> $1`, backendLauncher).Scan(&n)
	return n, err
}

// waitQuiet waits until no worker or scout is connected, only the launcher.
func (b *bench) waitQuiet(interval time.Duration) error { return b.waitQuietFor(interval, 0) }

// waitQuietFor waits until no worker or scout has been connected for hold
// (0: at one look), looking every interval.
func (b *bench) waitQuietFor(interval, hold time.Duration) error {
	var since time.Time
	what := fmt.Sprintf("no lantern_async worker or scout connected for %v", hold)
	return poll(b.ctx, interval, 2*time.Minute, what, func() (bool, error) {
		n, err := b.extProcs()
		if err != nil || n > 0 {
			since = time.Time{}
			return false, err
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= hold, nil
	})
}

// setIdleTimeout sets lantern_async.worker_idle_timeout with ALTER SYSTEM
// and a reload (d < 0 resets it to the default, 1s), and waits until a new
// session sees it.
func (b *bench) setIdleTimeout(d time.Duration) error {
	q := "ALTER SYSTEM RESET lantern_async.worker_idle_timeout"
	want := time.Second
	if d >= 0 {
		q = fmt.Sprintf("ALTER SYSTEM SET lantern_async.worker_idle_timeout = '%dms'", d.Milliseconds())
		want = d
	}
	if _, err := b.su.Exec(b.ctx, q); err != nil {
		return err
	}
	if _, err := b.su.Exec(b.ctx, "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	return poll(b.ctx, 20*time.Millisecond, 10*time.Second, "worker_idle_timeout = "+want.String(), func() (bool, error) {
		conn, err := b.c.Connect(b.ctx, dbName, superuser)
		if err != nil {
			return false, err
		}
		defer conn.Close(context.Background())
		var got int64
		err = conn.QueryRow(b.ctx, `SELECT setting::bigint * CASE unit WHEN 'ms' THEN 1 WHEN 's' THEN 1000
			WHEN 'min' THEN 60000 ELSE NULL END FROM pg_settings
			WHERE name = 'lantern_async.worker_idle_timeout'`).Scan(&got)
		return got == want.Milliseconds(), err
	})
}

// setMaxWorkers changes lantern_async.max_workers (a postmaster setting)
// with ALTER SYSTEM and a restart of the same cluster, then waits until
// the start sweep's scouts are gone.
func (b *bench) setMaxWorkers(n int) error {
	if _, err := b.su.Exec(b.ctx, fmt.Sprintf("ALTER SYSTEM SET lantern_async.max_workers = %d", n)); err != nil {
		return err
	}
	b.closeConns()
	b.su, b.user = nil, nil
	if err := b.c.Restart(pgcluster.Fast); err != nil {
		return err
	}
	if err := b.connect(); err != nil {
		return err
	}
	if err := b.reconnectUser(); err != nil {
		return err
	}
	var got string
	if err := b.su.QueryRow(b.ctx, "SHOW lantern_async.max_workers").Scan(&got); err != nil {
		return err
	}
	if got != fmt.Sprint(n) {
		return fmt.Errorf("lantern_async.max_workers is %s after the restart, want %d", got, n)
	}
	b.hdr.restarted = n
	return b.waitQuiet(50 * time.Millisecond)
}

// submitOne queues query as benchRole in a transaction of its own and
// returns the jobid and the transaction's xid (txid_current()).
func (b *bench) submitOne(query string) (jobid, xid int64, err error) {
	tx, err := b.user.Begin(b.ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	if err := tx.QueryRow(b.ctx, "SELECT lantern.async_task($1), txid_current()", query).Scan(&jobid, &xid); err != nil {
		return 0, 0, err
	}
	return jobid, xid, tx.Commit(b.ctx)
}

// submitBatch queues n copies of query as benchRole in one transaction and
// returns the jobid range and the transaction's xid.
func (b *bench) submitBatch(query string, n int) (first, last, xid int64, err error) {
	return b.submitBatchAs(b.user, query, n)
}

// submitBatchAs is submitBatch as user's role.
func (b *bench) submitBatchAs(user *pgx.Conn, query string, n int) (first, last, xid int64, err error) {
	tx, err := user.Begin(b.ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	if err := tx.QueryRow(b.ctx, `SELECT min(j), max(j), txid_current()
		FROM (SELECT lantern.async_task($1) AS j FROM generate_series(1, $2)) s`, query, n).
		Scan(&first, &last, &xid); err != nil {
		return 0, 0, 0, err
	}
	if last-first+1 != int64(n) {
		return 0, 0, 0, fmt.Errorf("jobids %d..%d for %d tasks", first, last, n)
	}
	return first, last, xid, tx.Commit(b.ctx)
}

// waitDone waits until no task of first..last is pending or running, then
// fails unless all of them succeeded. onPoll, if set, runs at each poll.
func (b *bench) waitDone(first, last int64, interval, timeout time.Duration, onPoll func() error) error {
	err := poll(b.ctx, interval, timeout, fmt.Sprintf("tasks %d..%d finished", first, last), func() (bool, error) {
		if onPoll != nil {
			if err := onPoll(); err != nil {
				return false, err
			}
		}
		var open bool
		err := b.su.QueryRow(b.ctx, `SELECT EXISTS (SELECT FROM lantern.tasks
			WHERE jobid BETWEEN $1 AND $2 AND status IN ('pending', 'running'))`, first, last).Scan(&open)
		return !open, err
	})
	if err != nil {
		return err
	}
	var bad int
	var sample *string
	if err := b.su.QueryRow(b.ctx, `SELECT count(*), min(status || ': ' || coalesce(error_message, ''))
		FROM lantern.tasks WHERE jobid BETWEEN $1 AND $2 AND status IS DISTINCT FROM 'succeeded'`,
		first, last).Scan(&bad, &sample); err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("%d of tasks %d..%d did not succeed (e.g. %s)", bad, first, last, *sample)
	}
	return nil
}

// xidExpr turns a txid_current() value (epoch and xid) bound as $n into
// the xid pg_xact_commit_timestamp() takes.
func xidExpr(n int) string {
	return fmt.Sprintf("(($%d::bigint %% 4294967296)::text::xid)", n)
}
