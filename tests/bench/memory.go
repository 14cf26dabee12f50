package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Row 6: VmRSS and RssAnon (/proc/<pid>/status) of the launcher and of one
// warm worker before and after BENCH_TASKS trivial tasks of one role,
// queued memBatch at a time in one transaction each. It runs with
// max_workers = 1 and worker_idle_timeout = 60s, so one worker process
// should run them all: that is checked after every batch.

const memBatch = 5000

// workerIdentity tells a worker process apart from a later one that got
// the same pid.
type workerIdentity struct {
	pid   int
	start time.Time
}

func (b *bench) workers() ([]workerIdentity, error) {
	rows, err := b.su.Query(b.ctx, `SELECT pid, backend_start FROM pg_stat_activity
		WHERE backend_type = $1 ORDER BY pid`, backendWorker)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ws []workerIdentity
	for rows.Next() {
		var w workerIdentity
		if err := rows.Scan(&w.pid, &w.start); err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, rows.Err()
}

func (b *bench) memory() error {
	// The idle CPU row left one warm worker (worker_idle_timeout = 60s).
	launcher, worker, err := b.launcherAndWorker()
	if err != nil {
		progress("   no single warm worker left (%v): warming one", err)
		if launcher, worker, err = b.warmWorker(); err != nil {
			return err
		}
	}
	ws, err := b.workers()
	if err != nil {
		return err
	}
	if len(ws) != 1 || ws[0].pid != worker {
		return fmt.Errorf("workers %v, want the one with pid %d", ws, worker)
	}
	first := ws[0]
	lBefore, err := memOf(launcher)
	if err != nil {
		return err
	}
	wBefore, err := memOf(worker)
	if err != nil {
		return err
	}

	n := b.cfg.memTasks
	var busy float64 // Σ over batches of (batch commit → its last finish), seconds
	slowest, fastest := math.Inf(1), 0.0
	changed := ""
	// The worker's RssAnon after each batch: a leak grows with the tasks,
	// a high-water mark does not.
	var anon []int64
	batches := 0
	for done := 0; done < n; {
		k := min(memBatch, n-done)
		lo, hi, xid, err := b.submitBatch("SELECT 1", k)
		if err != nil {
			return err
		}
		if err := b.waitDone(lo, hi, 100*time.Millisecond, 10*time.Minute, nil); err != nil {
			return err
		}
		var secs float64
		if err := b.su.QueryRow(b.ctx, `
			SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - pg_xact_commit_timestamp(`+xidExpr(3)+`))
			FROM lantern.tasks WHERE jobid BETWEEN $1 AND $2`, lo, hi, xid).Scan(&secs); err != nil {
			return err
		}
		busy += secs
		rate := float64(k) / secs
		slowest, fastest = min(slowest, rate), max(fastest, rate)
		done += k
		batches++
		if m, err := memOf(worker); err == nil {
			anon = append(anon, m.anon)
		}
		now, err := b.workers()
		if err != nil {
			return err
		}
		if changed == "" && (len(now) != 1 || now[0] != first) {
			changed = fmt.Sprintf("NO: after %d tasks the workers are %v (was pid %d)", done, now, first.pid)
			progress("   %s", changed)
		}
		progress("   memory: %d/%d tasks (%.0f tasks/s in this batch; worker RssAnon %d kB)", done, n, rate, anon[len(anon)-1])
	}

	lAfter, err := memOf(launcher)
	if err != nil {
		return fmt.Errorf("launcher after the tasks: %w", err)
	}
	wAfter, wErr := memOf(worker)

	b.tbl.section("6", "resident memory", fmt.Sprintf("VmRSS, RssAnon and RssShmem from /proc/<pid>/status before → after %d × SELECT 1 of one role, %d per transaction (each batch waited for), max_workers = 1, worker_idle_timeout = 60s",
		n, memBatch))
	b.tbl.add("launcher VmRSS", beforeAfter(lBefore.rss, lAfter.rss), "kB", 2, "")
	b.tbl.add("launcher RssAnon", beforeAfter(lBefore.anon, lAfter.anon), "kB", 2, "")
	if wErr != nil {
		b.tbl.add("worker VmRSS", fmt.Sprintf("%d → (gone: %v)", wBefore.rss, wErr), "kB", 2, "flat")
	} else {
		b.tbl.add("worker VmRSS", beforeAfter(wBefore.rss, wAfter.rss), "kB", 2, "flat")
		b.tbl.add("worker RssAnon (private)", beforeAfter(wBefore.anon, wAfter.anon), "kB", 2, "flat")
		b.tbl.add("worker RssShmem (shared buffers touched)", beforeAfter(wBefore.shmem, wAfter.shmem), "kB", 2, "")
	}
	if len(anon) > 1 {
		b.tbl.add("worker RssAnon after 1st, ¼, ½, ¾, last batch", quarters(anon), "kB", len(anon), "")
	}
	if changed == "" {
		changed = fmt.Sprintf("yes (pid %d)", first.pid)
	}
	b.tbl.add("one worker process ran all of them", changed, "", n, "")
	b.tbl.add("sustained throughput, 1 worker (Σ batch commit → last finish)", fmt.Sprintf("%.0f", float64(n)/busy), "tasks/s", n, "")
	b.tbl.add("  slowest / fastest batch", fmt.Sprintf("%.0f / %.0f", slowest, fastest), "tasks/s", fmt.Sprintf("%d batches", batches), "")
	return nil
}

// quarters shows v at its first element, each quarter and its end.
func quarters(v []int64) string {
	var s []string
	for _, q := range []int{0, 1, 2, 3} {
		s = append(s, fmt.Sprint(v[q*(len(v)-1)/4]))
	}
	return strings.Join(append(s, fmt.Sprint(v[len(v)-1])), ", ")
}

func beforeAfter(before, after int64) string {
	return fmt.Sprintf("%d → %d (%+d)", before, after, after-before)
}
