package main

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"
)

// The measurements, as tests/bench's rows 1 and 3 take them for
// lantern_async: inside the server, from commit timestamps and
// clock_timestamp(); the program polls only to know when to go on.

// xidOf turns a txid_current() value (epoch and xid) bound as $n into
// the xid pg_xact_commit_timestamp() takes.
func xidOf(n int) string {
	return fmt.Sprintf("(($%d::bigint %% 4294967296)::text::xid)", n)
}

func measureMode(ctx context.Context, o options, name string) (mode, error) {
	m := mode{Name: name, Jobs: o.jobs}
	s, err := startSide(ctx, o, name)
	if err != nil {
		return m, err
	}
	defer s.close()
	cooldown, poll := fetchIntervals(name)
	m.FetchCooldownMS, m.FetchPollIntervalMS = float64(cooldown)/1e6, float64(poll)/1e6
	// The first job warms the client up (its first fetch, the statements
	// of the pool's connections); it is not a sample.
	if _, _, err := s.insertAndWait(ctx, latencyArgs{Series: name, Seq: 0}); err != nil {
		return m, err
	}
	if o.idle > 0 {
		m.IdleSec = o.idle.Seconds()
		if m.IdleCPUPercent, err = s.idleCPU(ctx, o.idle); err != nil {
			return m, err
		}
	}
	if m.StartMS, m.CompletedMS, err = s.latency(ctx, o.samples); err != nil {
		return m, err
	}
	secs, fin, err := s.throughput(ctx, o.jobs)
	m.CommitToCompletedSec, m.CommitToFinalizedSec = secs, fin
	return m, err
}

// insertAndWait inserts one latency job in a transaction of its own and
// waits until River has committed its completion.
func (s *side) insertAndWait(ctx context.Context, args latencyArgs) (id, xid int64, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	res, err := s.client.InsertTx(ctx, tx, args, nil)
	if err != nil {
		return 0, 0, err
	}
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, err
	}
	id = res.Job.ID
	return id, xid, s.waitCompleted(ctx, []int64{id}, 2*time.Millisecond, time.Minute)
}

// latency inserts n jobs one at a time, each once the previous one has
// completed and gap has passed, and returns start − insert commit and
// completion commit − insert commit, in milliseconds.
func (s *side) latency(ctx context.Context, n int) (start, completed []float64, err error) {
	var seqs []int32
	var ids, xids []int64
	for i := 1; i <= n; i++ {
		if err := sleep(ctx, s.gap); err != nil {
			return nil, nil, err
		}
		id, xid, err := s.insertAndWait(ctx, latencyArgs{Series: s.name, Seq: i})
		if err != nil {
			return nil, nil, fmt.Errorf("latency job %d: %w", i, err)
		}
		seqs, ids, xids = append(seqs, int32(i)), append(ids, id), append(xids, xid)
		if i%50 == 0 {
			progress("   %s latency: %d/%d", s.name, i, n)
		}
	}
	rows, err := s.watch.Query(ctx, `
		SELECT extract(epoch FROM l.ts - c.ts) * 1000,
		       extract(epoch FROM pg_xact_commit_timestamp(j.xmin) - c.ts) * 1000
		FROM unnest($1::int[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS s(seq, id, xid, ord)
		CROSS JOIN LATERAL (SELECT pg_xact_commit_timestamp((s.xid % 4294967296)::text::xid) AS ts) c
		JOIN bench.lat l ON l.kind = $4 AND l.seq = s.seq
		JOIN river_job j ON j.id = s.id
		ORDER BY s.ord`, seqs, ids, xids, s.name)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var st, co *float64
		if err := rows.Scan(&st, &co); err != nil {
			return nil, nil, err
		}
		if st == nil || co == nil {
			return nil, nil, fmt.Errorf("a commit timestamp is missing (track_commit_timestamp off?)")
		}
		start, completed = append(start, *st), append(completed, *co)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(start) != n {
		return nil, nil, fmt.Errorf("%d latency samples joined, want %d", len(start), n)
	}
	return start, completed, nil
}

// throughput inserts n SELECT 1 jobs in one transaction and returns, in
// seconds, its commit → the latest commit of their completions, and → the
// latest finalized_at River recorded.
func (s *side) throughput(ctx context.Context, n int) (completed, finalized float64, err error) {
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: selectArgs{}}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	res, err := s.client.InsertManyTx(ctx, tx, params)
	if err != nil {
		return 0, 0, err
	}
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, err
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.Job.ID
	}
	progress("   %s throughput: %d jobs inserted", s.name, n)
	if err := s.waitCompleted(ctx, ids, 50*time.Millisecond, 20*time.Minute); err != nil {
		return 0, 0, err
	}
	err = s.watch.QueryRow(ctx, `
		SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - pg_xact_commit_timestamp(`+xidOf(2)+`)),
		       extract(epoch FROM max(finalized_at) - pg_xact_commit_timestamp(`+xidOf(2)+`))
		FROM river_job WHERE id = ANY($1)`, ids, xid).Scan(&completed, &finalized)
	return completed, finalized, err
}

// waitCompleted polls until every job of ids is completed, and fails as
// soon as one ended otherwise (or is waiting for a retry).
func (s *side) waitCompleted(ctx context.Context, ids []int64, interval, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var done, bad int
		var sample *string
		if err := s.watch.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE state = 'completed'),
			       count(*) FILTER (WHERE state IN ('cancelled', 'discarded', 'retryable')),
			       min(state::text || ': ' || errors::text) FILTER (WHERE state IN ('cancelled', 'discarded', 'retryable'))
			FROM river_job WHERE id = ANY($1)`, ids).Scan(&done, &bad, &sample); err != nil {
			return err
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d jobs did not complete (e.g. %s)", bad, len(ids), *sample)
		}
		if done == len(ids) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d jobs completed after %s", done, len(ids), timeout)
		}
		if err := sleep(ctx, interval); err != nil {
			return err
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
