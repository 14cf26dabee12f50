package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Section S1: row 1's warm start latency of benchRole's task (each task
// submitted alone once the previous one finished) on an idle server, then
// while another role (scaleBusyRole) has BENCH_SCALE_PENDING tasks
// pending: (a) runnable now (SELECT 1, its workers busy running them), (b)
// waiting for later (run_after over the hour after the next 10 minutes:
// row 11's case at 100×). The (b) tasks stay pending for S4.

const (
	scaleBusyRole = "bench_busy"
	// scaleWaitFirst and scaleWaitSpan: run_after of the i-th waiting task
	// is now() + scaleWaitFirst + i × scaleWaitSpan / n (row 11's times).
	scaleWaitFirst = 10 * time.Minute
	scaleWaitSpan  = time.Hour
)

// scaleLeft is what S1 left pending for S4 (zero: nothing).
var scaleLeft struct{ first, last int64 }

// startFigures is one latencyRun's result and the machine's CPU meanwhile.
type startFigures struct {
	p50, p99, cpuPct float64
	n                int
}

func (b *bench) scalePending(sc scaleConfig) error {
	busy, err := b.scaleRole(scaleBusyRole)
	if err != nil {
		return err
	}
	defer busy.Close(context.Background())
	idle, err := b.scaleStarts("scale_idle", nil)
	if err != nil {
		return err
	}
	b.tbl.section("S1", "start latency beside another role's pending tasks",
		fmt.Sprintf("row 1's warm start (%d tasks of one role, each alone once the previous finished, +10 ms; max_workers = 4, worker_idle_timeout = 1s) on an idle server, then while role %s has %d tasks pending: (a) SELECT 1 due now, submitted in one transaction (its workers busy); (b) SELECT 1 with run_after = now() + %v + i × %v/%d (row 11's case at %d×); CPU = the machine's busy share (/proc/stat) during the samples",
			latencySamples, scaleBusyRole, sc.pending, scaleWaitFirst, scaleWaitSpan, sc.pending, max(1, sc.pending/waitingTasks)))
	b.scaleStartRows("idle server", idle, idle)
	if err := b.scaleRunnable(busy, sc.pending, idle); err != nil {
		return err
	}
	// The machine is shared: the idle figure again, after (a), shows how
	// far it moved meanwhile.
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return err
	}
	again, err := b.scaleStarts("scale_idle_again", nil)
	if err != nil {
		return err
	}
	b.scaleStartRows("idle server again, after (a)", again, idle)
	return b.scaleWaiting(busy, sc.pending, idle)
}

// scaleRunnable is S1 (a): n SELECT 1 of user's role due now.
func (b *bench) scaleRunnable(busy *pgx.Conn, n int, idle startFigures) error {
	first, last, secs, err := b.scaleSubmitBusy(busy, n, false)
	if err != nil {
		return err
	}
	b.tbl.add(fmt.Sprintf("submit %d × SELECT 1 in one transaction", n), fmt.Sprintf("%.1f", secs*1e6/float64(n)), "µs per task", n, "")
	counts := map[string][]int{}
	ours := map[workerIdentity]bool{} // our role's worker processes seen
	runnable, err := b.scaleStarts("scale_runnable", func(int) error {
		ws, err := b.workersOf(benchRole)
		for _, w := range ws {
			ours[w] = true
		}
		if err != nil {
			return err
		}
		return b.countWorkersByRole(counts)
	})
	if err != nil {
		return err
	}
	b.scaleStartRows("(a) runnable now", runnable, idle)
	b.tbl.add("  (a) worker processes per role (min–max over samples)", workerSpread(counts), "", runnable.n, "")
	b.tbl.add("  (a) our role's worker processes seen after its tasks (distinct)", fmt.Sprint(len(ours)), "processes", runnable.n, "")
	return b.scaleCancelAll(busy, first, last)
}

// scaleWaiting is S1 (b): n SELECT 1 of user's role due later, left
// pending for S4 if it runs.
func (b *bench) scaleWaiting(busy *pgx.Conn, n int, idle startFigures) error {
	first, last, _, err := b.scaleSubmitBusy(busy, n, true)
	if err != nil {
		return err
	}
	scaleLeft.first, scaleLeft.last = first, last
	if err := b.waitQuietFor(50*time.Millisecond, waitingQuietFor); err != nil {
		return err
	}
	waiting, err := b.scaleStarts("scale_waiting", nil)
	if err != nil {
		return err
	}
	b.scaleStartRows("(b) waiting for later", waiting, idle)
	if !b.scaleWants("scale_cancel") {
		scaleLeft.first, scaleLeft.last = 0, 0
		if err := b.scaleCancelAll(busy, first, last); err != nil {
			return err
		}
	}
	return nil
}

// scaleStarts warms benchRole's worker with a first task, then runs row
// 1's latencyRun (+ after each sample), measuring the machine's CPU.
func (b *bench) scaleStarts(kind string, after func(int) error) (startFigures, error) {
	var f startFigures
	job, _, err := b.submitOne(latencyQuery(kind, 0))
	if err != nil {
		return f, err
	}
	if err := b.waitDone(job, job, 2*time.Millisecond, time.Minute, nil); err != nil {
		return f, err
	}
	meter, err := startCPU()
	if err != nil {
		return f, err
	}
	start, _, err := b.latencyRun(kind, func() error { return sleep(b.ctx, warmGap) }, after)
	if err != nil {
		return f, err
	}
	if f.cpuPct, err = meter.pct(); err != nil {
		return f, err
	}
	f.p50, f.p99, f.n = percentile(start, 50), percentile(start, 99), len(start)
	progress("   %s: start p50 %.3f ms, p99 %.3f ms, CPU %.0f %%", kind, f.p50, f.p99, f.cpuPct)
	return f, nil
}

func (b *bench) scaleStartRows(label string, f, idle startFigures) {
	target := ""
	if strings.HasPrefix(label, "(") {
		target = "≤ 1.2× idle"
	}
	b.tbl.add(label+": start − submit commit, p50", withRatio(f.p50, idle.p50, "%.3f"), "ms", f.n, target)
	b.tbl.add(label+": start − submit commit, p99", withRatio(f.p99, idle.p99, "%.3f"), "ms", f.n, target)
	b.tbl.add(label+": machine CPU busy", fmt.Sprintf("%.0f", f.cpuPct), "% of 2 cores", 0, "")
}

// scaleSubmitBusy queues n SELECT 1 as user's role in one transaction,
// due now or (later) over the hour after the next scaleWaitFirst, and
// returns the jobids and the seconds the submit took.
func (b *bench) scaleSubmitBusy(user *pgx.Conn, n int, later bool) (first, last int64, secs float64, err error) {
	runAfter := "NULL"
	if later {
		runAfter = fmt.Sprintf("now() + interval '%d seconds' + i * interval '%d microseconds' / %d",
			int(scaleWaitFirst.Seconds()), scaleWaitSpan.Microseconds(), n)
	}
	t0 := time.Now()
	err = user.QueryRow(b.ctx, `SELECT min(j), max(j) FROM (
		SELECT lantern.async_task('SELECT 1', run_after => `+runAfter+`) AS j
		FROM generate_series(1, $1) i) s`, n).Scan(&first, &last)
	secs = time.Since(t0).Seconds()
	if err == nil && last-first+1 != int64(n) {
		err = fmt.Errorf("jobids %d..%d for %d tasks", first, last, n)
	}
	progress("   %d tasks submitted (later: %v) in %.1f s", n, later, secs)
	return first, last, secs, err
}

// scaleCancelAll cancels user's unfinished tasks and checks that none of
// first..last is left pending or running.
func (b *bench) scaleCancelAll(user *pgx.Conn, first, last int64) error {
	if _, err := user.Exec(b.ctx, "SELECT lantern.cancel_all_async_tasks()"); err != nil {
		return err
	}
	return poll(b.ctx, 100*time.Millisecond, 2*time.Minute, "the canceled tasks' end", func() (bool, error) {
		var open bool
		err := b.su.QueryRow(b.ctx, `SELECT EXISTS (SELECT FROM lantern.tasks
			WHERE jobid BETWEEN $1 AND $2 AND status IN ('pending', 'running'))`, first, last).Scan(&open)
		return !open, err
	})
}

// countWorkersByRole appends each role's number of workers now.
func (b *bench) countWorkersByRole(counts map[string][]int) error {
	rows, err := b.su.Query(b.ctx, `SELECT r, count(a.pid)::int FROM unnest($1::text[]) r
		LEFT JOIN pg_stat_activity a ON a.usename = r AND a.backend_type = $2 GROUP BY r`,
		[]string{benchRole, scaleBusyRole}, backendWorker)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var role string
		var n int
		if err := rows.Scan(&role, &n); err != nil {
			return err
		}
		counts[role] = append(counts[role], n)
	}
	return rows.Err()
}

// workerSpread formats "role: min–max" for each role.
func workerSpread(counts map[string][]int) string {
	var parts []string
	for role, v := range counts {
		s := append([]int(nil), v...)
		sort.Ints(s)
		parts = append(parts, fmt.Sprintf("%s: %d–%d (median %d)", role, s[0], s[len(s)-1], s[len(s)/2]))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// workersOf lists role's worker processes.
func (b *bench) workersOf(role string) ([]workerIdentity, error) {
	rows, err := b.su.Query(b.ctx, `SELECT pid, backend_start FROM pg_stat_activity
		WHERE backend_type = $1 AND usename = $2`, backendWorker, role)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (workerIdentity, error) {
		var w workerIdentity
		return w, r.Scan(&w.pid, &w.start)
	})
}
