package main

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Row 10: how soon after its run_after a delayed task starts. Each of
// delayedSamples tasks is submitted alone with run_after = the server's
// clock_timestamp() + 200..400 ms and waited for (CALL lantern.wait_task,
// no polling) before the next; late = the clock_timestamp() its query
// inserts − its run_after. Once with an idle warm worker of the role, once
// cold (worker_idle_timeout = 0: no worker or scout connected at each
// submit, so the launcher's nap ends at the due time and it forks one).

const (
	delayedSamples = 200
	delayedMin     = 200 * time.Millisecond
	delayedSpread  = 200 * time.Millisecond
)

// delayedStats is one run's lateness: its samples in ms, and how many
// tasks started before their run_after.
type delayedStats struct {
	late  []float64
	early int
}

func (b *bench) delayedStarts() error {
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return err
	}
	// The warm run: one worker kept idle between the tasks (a first task
	// makes it), so each start is the launcher waking it at the due time.
	if err := b.setIdleTimeout(memIdleTimeout); err != nil {
		return err
	}
	if err := b.runAndWait("SELECT 1"); err != nil {
		return err
	}
	warm, err := b.delayedRun("delayed_warm", func() error { return sleep(b.ctx, warmGap) })
	if err != nil {
		return err
	}
	if err := b.setIdleTimeout(0); err != nil {
		return err
	}
	cold, err := b.delayedRun("delayed_cold", func() error {
		if err := b.waitQuiet(5 * time.Millisecond); err != nil {
			return err
		}
		return sleep(b.ctx, coldGap)
	})
	if err != nil {
		return err
	}
	b.tbl.section("10", "start after run_after", fmt.Sprintf("%d tasks, each submitted alone with run_after = clock_timestamp() + %v..%v and waited for (CALL lantern.wait_task) before the next; late = the task's clock_timestamp() at start − its run_after; warm: the role's worker idle (worker_idle_timeout = %v, after a first task); cold: worker_idle_timeout = 0, no worker or scout connected at each submit (+%v)",
		delayedSamples, delayedMin, delayedMin+delayedSpread, memIdleTimeout, coldGap))
	for _, r := range []struct {
		name string
		s    delayedStats
	}{{"warm", warm}, {"cold", cold}} {
		n := len(r.s.late)
		b.tbl.add(r.name+": start − run_after, p50", ms(percentile(r.s.late, 50)), "ms", n, "")
		b.tbl.add(r.name+": start − run_after, p99", ms(percentile(r.s.late, 99)), "ms", n, "")
		b.tbl.add(r.name+": started before run_after", fmt.Sprint(r.s.early), "tasks", n, "0")
	}
	return b.setIdleTimeout(-1)
}

// runAndWait runs query as a task of benchRole and waits for it to succeed.
func (b *bench) runAndWait(query string) error {
	job, _, err := b.submitOne(query)
	if err != nil {
		return err
	}
	return b.waitTask(job)
}

// waitTask waits for job with CALL lantern.wait_task (the server wakes the
// call; nothing polls) and fails unless it succeeded.
func (b *bench) waitTask(job int64) error {
	var status *string
	if err := b.user.QueryRow(b.ctx, "CALL lantern.wait_task($1, '30 s', NULL)", job).Scan(&status); err != nil {
		return err
	}
	if status == nil || *status != "succeeded" {
		var msg *string
		_ = b.su.QueryRow(b.ctx, "SELECT error_message FROM lantern.tasks WHERE jobid = $1", job).Scan(&msg)
		return fmt.Errorf("task %d: status %v, want succeeded (%v)", job, deref(status), deref(msg))
	}
	return nil
}

// delayedRun submits delayedSamples delayed tasks one at a time, each
// after before(), and returns how late each started.
func (b *bench) delayedRun(kind string, before func() error) (delayedStats, error) {
	rng := rand.New(rand.NewPCG(19, 19)) // the same delays every run
	var seqs []int32
	var runAfters []time.Time
	for i := 1; i <= delayedSamples; i++ {
		if err := before(); err != nil {
			return delayedStats{}, err
		}
		delay := delayedMin + time.Duration(rng.Int64N(int64(delayedSpread)+1))
		var job int64
		var runAfter time.Time
		// Its own transaction: the submit commits before the wait.
		if err := b.user.QueryRow(b.ctx, `
			WITH a AS (SELECT clock_timestamp() + $2::interval AS run_after)
			SELECT lantern.async_task($1, run_after => a.run_after), a.run_after FROM a`,
			latencyQuery(kind, i), fmt.Sprintf("%d microseconds", delay.Microseconds())).Scan(&job, &runAfter); err != nil {
			return delayedStats{}, err
		}
		if err := b.waitTask(job); err != nil {
			return delayedStats{}, err
		}
		seqs, runAfters = append(seqs, int32(i)), append(runAfters, runAfter)
		if i%50 == 0 {
			progress("   %s: %d/%d", kind, i, delayedSamples)
		}
	}
	return b.lateness(kind, seqs, runAfters)
}

// lateness reads each sample's start − run_after (ms) from bench.lat.
func (b *bench) lateness(kind string, seqs []int32, runAfters []time.Time) (delayedStats, error) {
	rows, err := b.su.Query(b.ctx, `
		SELECT extract(epoch FROM l.ts - s.run_after)::float8 * 1000
		FROM unnest($1::int[], $2::timestamptz[]) AS s(seq, run_after)
		JOIN bench.lat l ON l.kind = $3 AND l.seq = s.seq`, seqs, runAfters, kind)
	if err != nil {
		return delayedStats{}, err
	}
	defer rows.Close()
	var st delayedStats
	for rows.Next() {
		var late float64
		if err := rows.Scan(&late); err != nil {
			return delayedStats{}, err
		}
		st.late = append(st.late, late)
		if late < 0 {
			st.early++
		}
	}
	if err := rows.Err(); err != nil {
		return delayedStats{}, err
	}
	if len(st.late) != len(seqs) {
		return delayedStats{}, fmt.Errorf("%s: %d samples joined, want %d", kind, len(st.late), len(seqs))
	}
	if st.early > 0 {
		progress("   %s: %d tasks started before their run_after", kind, st.early)
	}
	return st, nil
}

func deref(p *string) string {
	if p == nil {
		return "<NULL>"
	}
	return *p
}
