package main

import (
	"fmt"
	"strings"
	"time"
)

// Section S5: memory at scale. The worker: row 6's method (one role,
// memBatch SELECT 1 per transaction, each batch waited for, max_workers =
// 1 so that one worker runs them all, worker_idle_timeout = 60s) over
// BENCH_SCALE_MEMORY_TASKS tasks, its RssAnon after each batch, shown at
// every tenth of the run. The launcher: its VmRSS and RssAnon before and
// after each size of S2 (roles) and S3 (databases), taken by
// scaleLauncherMem and printed here.

// scaleLauncherSamples are the launcher's memory figures, in order.
var scaleLauncherSamples []struct {
	label string
	pid   int
	mem   memKB
}

func (b *bench) scaleWorkerMemory(sc scaleConfig) error {
	if err := b.ensureMaxWorkers(1); err != nil {
		return err
	}
	launcher, worker, err := b.warmWorker() // worker_idle_timeout = 60s
	if err != nil {
		return err
	}
	before, err := memOf(worker)
	if err != nil {
		return err
	}
	lBefore, err := memOf(launcher)
	if err != nil {
		return err
	}
	anon, busy, err := b.scaleBatches(sc.memoryTasks, worker)
	if err != nil {
		return err
	}
	lAfter, err := memOf(launcher)
	if err != nil {
		return err
	}
	b.tbl.section("S5", "memory at scale", fmt.Sprintf("worker: as row 6 (SELECT 1 of one role, %d per transaction, each batch waited for, max_workers = 1, worker_idle_timeout = 60s) over %d tasks, its RssAnon (/proc/<pid>/status) after each batch; launcher: VmRSS and RssAnon after each size of S2 and S3",
		memBatch, sc.memoryTasks))
	b.tbl.add(fmt.Sprintf("worker RssAnon before → after %d tasks", sc.memoryTasks), beforeAfter(before.anon, anon[len(anon)-1]), "kB", 2, "flat")
	b.tbl.add("worker RssAnon after the 1st batch, each tenth", tenths(anon), "kB", len(anon), "")
	lo, hi := anon[0], anon[0]
	for _, v := range anon {
		lo, hi = min(lo, v), max(hi, v)
	}
	b.tbl.add("worker RssAnon over the batches: min / max", fmt.Sprintf("%d / %d", lo, hi), "kB", len(anon), "")
	b.tbl.add("  launcher RssAnon meanwhile", beforeAfter(lBefore.anon, lAfter.anon), "kB", 2, "")
	b.tbl.add("  sustained throughput, 1 worker", fmt.Sprintf("%.0f", float64(sc.memoryTasks)/busy), "tasks/s", sc.memoryTasks, "")
	if err := b.setIdleTimeout(-1); err != nil {
		return err
	}
	return b.ensureMaxWorkers(4)
}

// scaleBatches runs n SELECT 1 in batches, checking that worker runs them
// all, and returns its RssAnon after each batch and the seconds busy.
func (b *bench) scaleBatches(n, worker int) (anon []int64, busy float64, err error) {
	for done := 0; done < n; {
		k := min(memBatch, n-done)
		lo, hi, xid, err := b.submitBatch("SELECT 1", k)
		if err != nil {
			return nil, 0, err
		}
		if err := b.waitDone(lo, hi, 50*time.Millisecond, 10*time.Minute, nil); err != nil {
			return nil, 0, err
		}
		var secs float64
		if err := b.su.QueryRow(b.ctx, `
			SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - pg_xact_commit_timestamp(`+xidExpr(3)+`))
			FROM lantern.tasks WHERE jobid BETWEEN $1 AND $2`, lo, hi, xid).Scan(&secs); err != nil {
			return nil, 0, err
		}
		busy += secs
		done += k
		m, err := memOf(worker)
		if err != nil {
			return nil, 0, fmt.Errorf("the worker (pid %d) after %d tasks: %w", worker, done, err)
		}
		anon = append(anon, m.anon)
		if len(anon)%20 == 0 || done == n {
			progress("   worker memory: %d/%d tasks, RssAnon %d kB", done, n, m.anon)
		}
	}
	ws, err := b.workers()
	if err != nil {
		return nil, 0, err
	}
	if len(ws) != 1 || ws[0].pid != worker {
		return nil, 0, fmt.Errorf("workers %v after the tasks, want only pid %d", ws, worker)
	}
	return anon, busy, nil
}

// tenths shows v at its first element and each tenth.
func tenths(v []int64) string {
	var s []string
	for q := 0; q <= 10; q++ {
		s = append(s, fmt.Sprint(v[q*(len(v)-1)/10]))
	}
	return strings.Join(s, ", ")
}

// scaleLauncherMem samples the launcher's memory under label.
func (b *bench) scaleLauncherMem(label string) error {
	pids, err := b.pidsOf(backendLauncher)
	if err != nil {
		return err
	}
	if len(pids) != 1 {
		return fmt.Errorf("want one launcher, have %v", pids)
	}
	m, err := memOf(pids[0])
	if err != nil {
		return err
	}
	progress("   launcher (pid %d) %s: VmRSS %d kB, RssAnon %d kB", pids[0], label, m.rss, m.anon)
	scaleLauncherSamples = append(scaleLauncherSamples, struct {
		label string
		pid   int
		mem   memKB
	}{label, pids[0], m})
	return nil
}

// scaleLauncherRows prints the launcher's samples into S5.
func (b *bench) scaleLauncherRows() {
	if len(scaleLauncherSamples) == 0 {
		return
	}
	b.tbl.section("S5", "memory at scale", "")
	first := scaleLauncherSamples[0]
	for _, s := range scaleLauncherSamples {
		same := ""
		if s.pid != first.pid {
			same = fmt.Sprintf(" (pid %d, not %d)", s.pid, first.pid)
		}
		b.tbl.add("launcher VmRSS / RssAnon, "+s.label+same,
			fmt.Sprintf("%d / %d (%+d / %+d)", s.mem.rss, s.mem.anon, s.mem.rss-first.mem.rss, s.mem.anon-first.mem.anon), "kB", 0, "flat")
	}
}
