package main

import (
	"fmt"
	"time"
)

// Row 5: CPU time of the launcher and of one idle, warm worker
// (worker_idle_timeout = 60s) over idleWindow, from /proc/<pid>/stat.

const (
	idleWindow      = 10 * time.Second
	memIdleTimeout  = 60 * time.Second // also keeps the memory row's worker between batches
	idleSettleDelay = 500 * time.Millisecond
)

// warmWorker sets worker_idle_timeout = 60s, runs one trivial task and
// returns the launcher's and the now idle worker's pids, checking that no
// other lantern_async process is connected.
func (b *bench) warmWorker() (launcher, worker int, err error) {
	// Quiet for longer than the default worker_idle_timeout: a worker
	// launched before the setting below (the dependents row's claims still
	// deciding its canceled tasks) would run this row's task and leave 1 s
	// later, in the middle of the window.
	if err := b.waitQuietFor(20*time.Millisecond, 1500*time.Millisecond); err != nil {
		return 0, 0, err
	}
	if err := b.setIdleTimeout(memIdleTimeout); err != nil {
		return 0, 0, err
	}
	job, _, err := b.submitOne("SELECT 1")
	if err != nil {
		return 0, 0, err
	}
	if err := b.waitDone(job, job, 5*time.Millisecond, 30*time.Second, nil); err != nil {
		return 0, 0, err
	}
	if err := sleep(b.ctx, idleSettleDelay); err != nil {
		return 0, 0, err
	}
	return b.launcherAndWorker()
}

// launcherAndWorker returns the pids of the one launcher and the one
// worker, failing if any other lantern_async process is connected.
func (b *bench) launcherAndWorker() (launcher, worker int, err error) {
	l, err := b.pidsOf(backendLauncher)
	if err != nil {
		return 0, 0, err
	}
	w, err := b.pidsOf(backendWorker)
	if err != nil {
		return 0, 0, err
	}
	n, err := b.extProcs()
	if err != nil {
		return 0, 0, err
	}
	if len(l) != 1 || len(w) != 1 || n != 1 {
		return 0, 0, fmt.Errorf("want one launcher and one worker only: launchers %v, workers %v, %d non-launcher processes", l, w, n)
	}
	return l[0], w[0], nil
}

func (b *bench) idleCPU() error {
	launcher, worker, err := b.warmWorker()
	if err != nil {
		return err
	}
	pids := []int{launcher, worker}
	before := make([]int64, len(pids))
	for i, p := range pids {
		if before[i], err = cpuTicks(p); err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := sleep(b.ctx, idleWindow); err != nil {
		return err
	}
	elapsed := time.Since(t0).Seconds()
	pct := make([]float64, len(pids))
	for i, p := range pids {
		after, err := cpuTicks(p)
		if err != nil {
			return err
		}
		pct[i] = float64(after-before[i]) / clockTicks / elapsed * 100
	}
	l2, w2, err := b.launcherAndWorker()
	if err != nil {
		return fmt.Errorf("after the idle window: %w", err)
	}
	if l2 != launcher || w2 != worker {
		return fmt.Errorf("processes changed during the idle window: launcher %d→%d, worker %d→%d", launcher, l2, worker, w2)
	}
	b.tbl.section("5", "idle CPU", fmt.Sprintf("utime+stime from /proc/<pid>/stat over %.0f s (%d Hz ticks: resolution %.2f %% of a core), no task running; the worker ran one task and waits (worker_idle_timeout = %s)",
		idleWindow.Seconds(), clockTicks, 100/(clockTicks*idleWindow.Seconds()), memIdleTimeout))
	window := fmt.Sprintf("1 × %.0f s", idleWindow.Seconds())
	b.tbl.add("launcher + one idle warm worker", fmt.Sprintf("%.2f", pct[0]+pct[1]), "% of a core", window, "< 1 %")
	b.tbl.add("  launcher", fmt.Sprintf("%.2f", pct[0]), "% of a core", window, "")
	b.tbl.add("  idle worker", fmt.Sprintf("%.2f", pct[1]), "% of a core", window, "")
	return nil
}
