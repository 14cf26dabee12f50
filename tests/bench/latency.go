package main

import (
	"fmt"
	"strings"
	"time"
)

// Rows 1 and 2: start and finish latency of one task submitted alone.
// start = the task's own clock_timestamp() (inserted into bench.lat with a
// sequence number embedded in its query) − the submit's commit timestamp;
// finish = the commit timestamp of the task row's final version (its xmin:
// a success is committed in the task's own last transaction) − the same.

const (
	latencySamples = 200
	// warmGap separates a task's end from the next submit, so that the
	// worker is back waiting on its latch (not still in DISCARD ALL).
	warmGap = 10 * time.Millisecond
	// coldGap follows "no worker or scout connected", so that the
	// postmaster has reaped the last one.
	coldGap = 20 * time.Millisecond
)

func latencyQuery(kind string, seq int) string {
	return fmt.Sprintf("INSERT INTO bench.lat (kind, seq, ts) VALUES ('%s', %d, clock_timestamp())", kind, seq)
}

// latencyRun submits latencySamples tasks one at a time, each after
// before() and waits for each (then calls after(sample), if set), and
// returns the start and finish latencies in milliseconds.
func (b *bench) latencyRun(kind string, before func() error, after func(int) error) (start, finish []float64, err error) {
	var seqs []int32
	var jobs, xids []int64
	for i := 1; i <= latencySamples; i++ {
		if err := before(); err != nil {
			return nil, nil, err
		}
		job, xid, err := b.submitOne(latencyQuery(kind, i))
		if err != nil {
			return nil, nil, err
		}
		if err := b.waitDone(job, job, 2*time.Millisecond, 30*time.Second, nil); err != nil {
			return nil, nil, err
		}
		seqs, jobs, xids = append(seqs, int32(i)), append(jobs, job), append(xids, xid)
		if after != nil {
			if err := after(i); err != nil {
				return nil, nil, err
			}
		}
		if i%50 == 0 {
			progress("   %s: %d/%d", kind, i, latencySamples)
		}
	}
	rows, err := b.su.Query(b.ctx, `
		SELECT extract(epoch FROM l.ts - c.ts) * 1000,
		       extract(epoch FROM pg_xact_commit_timestamp(t.xmin) - c.ts) * 1000
		FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS s(seq, jobid, xid)
		CROSS JOIN LATERAL (SELECT pg_xact_commit_timestamp((s.xid % 4294967296)::text::xid) AS ts) c
		JOIN bench.lat l ON l.kind = $4 AND l.seq = s.seq
		JOIN lantern.tasks t ON t.jobid = s.jobid`, seqs, jobs, xids, kind)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var s, f *float64
		if err := rows.Scan(&s, &f); err != nil {
			return nil, nil, err
		}
		if s == nil || f == nil {
			return nil, nil, fmt.Errorf("%s: a commit timestamp is missing (track_commit_timestamp off?)", kind)
		}
		start, finish = append(start, *s), append(finish, *f)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(start) != latencySamples {
		return nil, nil, fmt.Errorf("%s: %d samples joined, want %d", kind, len(start), latencySamples)
	}
	return start, finish, nil
}

func (b *bench) warmLatency() error {
	// The first task makes the worker; it is not a sample.
	job, _, err := b.submitOne(latencyQuery("warm", 0))
	if err != nil {
		return err
	}
	if err := b.waitDone(job, job, 2*time.Millisecond, 30*time.Second, nil); err != nil {
		return err
	}
	// Which worker processes exist after each sample (outside the timed
	// part): one should serve the whole run.
	first, err := b.workers()
	if err != nil {
		return err
	}
	seen := map[workerIdentity]bool{}
	var extra []string
	for _, w := range first {
		seen[w] = true
	}
	track := func(sample int) error {
		ws, err := b.workers()
		for _, w := range ws {
			if !seen[w] {
				seen[w] = true
				extra = append(extra, fmt.Sprintf("pid %d after sample %d", w.pid, sample))
			}
		}
		return err
	}
	start, finish, err := b.latencyRun("warm", func() error { return sleep(b.ctx, warmGap) }, track)
	if err != nil {
		return err
	}
	n := len(start)
	b.tbl.section("1", "warm start", "one role, its worker idle after a first task; each task submitted alone in its own transaction once the previous one finished (+10 ms); start = the task's clock_timestamp(), finished = commit timestamp of its lantern.tasks row (xmin)")
	b.tbl.add("start − submit commit, p50", ms(percentile(start, 50)), "ms", n, "≤ 1.5 ms")
	b.tbl.add("start − submit commit, p99", ms(percentile(start, 99)), "ms", n, "≤ 5 ms")
	b.tbl.add("finished − submit commit, p50", ms(percentile(finish, 50)), "ms", n, "")
	b.tbl.add("finished − submit commit, p99", ms(percentile(finish, 99)), "ms", n, "")
	ran := fmt.Sprintf("%d at the start", len(first))
	if len(extra) > 0 {
		shown := extra[:min(len(extra), 3)]
		ran += fmt.Sprintf(", %d more: %s", len(extra), strings.Join(shown, ", "))
		if len(shown) < len(extra) {
			ran += ", …"
		}
		progress("   warm: worker processes started during the run: %s", strings.Join(extra, ", "))
	}
	b.tbl.add("worker processes of the role", ran, "", n, "")
	b.tbl.set("warm_p50", percentile(start, 50))
	return nil
}

func (b *bench) coldLatency() error {
	if err := b.setIdleTimeout(0); err != nil {
		return err
	}
	start, finish, err := b.latencyRun("cold", func() error {
		if err := b.waitQuiet(5 * time.Millisecond); err != nil {
			return err
		}
		return sleep(b.ctx, coldGap)
	}, nil)
	if err != nil {
		return err
	}
	n := len(start)
	b.tbl.section("2", "cold start", "as row 1 with worker_idle_timeout = 0: no worker or scout connected at each submit (+20 ms), so each task forks and connects a worker")
	b.tbl.add("start − submit commit, p50", ms(percentile(start, 50)), "ms", n, "")
	b.tbl.add("start − submit commit, p99", ms(percentile(start, 99)), "ms", n, "")
	b.tbl.add("finished − submit commit, p50", ms(percentile(finish, 50)), "ms", n, "")
	b.tbl.add("finished − submit commit, p99", ms(percentile(finish, 99)), "ms", n, "")
	return b.setIdleTimeout(-1)
}
