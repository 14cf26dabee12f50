package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// Row 15: concurrent submitters. pgbench (pg_config --bindir) runs
// clients that each submit one-task transactions as fast as they can for
// BENCH_SUBMIT_SECONDS (30), with max_workers 4 and then 16 (ALTER SYSTEM
// + a restart of the same cluster, as for max_workers = 1). Each task
// inserts its submit's xid and clock_timestamp() into bench.sub: start =
// that timestamp − the submit's commit timestamp; finish = the commit
// timestamp of that row (the task's success commits with it). The window
// is the first to the last submit's commit.

var (
	submitWorkerCounts = []int{4, 16}
	submitClientCounts = []int{8, 32}
)

const (
	// submitWorkerProcesses leaves room, beside 16 workers and the
	// launcher, for the server's parallel workers (max_parallel_workers 8).
	submitWorkerProcesses = 32
	submitDrainTimeout    = 10 * time.Minute
)

func submitSeconds() (int, error) {
	s := os.Getenv("BENCH_SUBMIT_SECONDS")
	if s == "" {
		return 30, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("BENCH_SUBMIT_SECONDS=%q: want a positive integer", s)
	}
	return n, nil
}

// submitRun is what one configuration measured.
type submitRun struct {
	workers, clients int
	tasks            int     // submitted (pgbench's transactions), each run once
	windowS          float64 // first → last submit commit
	finishedInWindow int
	backlogHalf      int // submitted − finished at half the window
	backlogEnd       int // ... at its end
	drainS           float64
	startedInWindow  int
	p50W, p99W       float64 // start − submit commit, ms, started in the window
	p50, p99         float64 // ... all tasks
	wal              walStat // from before pgbench until the run's workers exited
	machine          machineCPU
	server           cpuUse
	pgbenchS         float64 // pgbench's own CPU
	cpuWindowS       float64 // the bench's clock around pgbench
}

func (b *bench) submitters() error {
	secs, err := submitSeconds()
	if err != nil {
		return err
	}
	// setMaxWorkers notes its value for the header, which describes the
	// rows after the restart to max_workers = 1.
	restarted := b.hdr.restarted
	defer func() { b.hdr.restarted = restarted }()
	for _, q := range []string{
		fmt.Sprintf("ALTER SYSTEM SET max_worker_processes = %d", submitWorkerProcesses),
		"ALTER SYSTEM SET track_wal_io_timing = on",
	} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return err
		}
	}
	if _, err := b.user.Exec(b.ctx, `CREATE TABLE bench.sub (run int, xid bigint, ts timestamptz, PRIMARY KEY (run, xid));
		CREATE TABLE bench.sub_control (v int)`); err != nil {
		return err
	}
	b.tbl.section("15", "concurrent submitters", submitHow(secs))
	var first, last int64
	for _, w := range submitWorkerCounts {
		if err := b.setMaxWorkers(w); err != nil {
			return err
		}
		for _, c := range submitClientCounts {
			if w == submitWorkerCounts[0] {
				if err := b.submitControl(c, secs); err != nil {
					return fmt.Errorf("control, %d clients: %w", c, err)
				}
			}
			r, f, l, err := b.submitOnce(w, c, secs)
			if err != nil {
				return fmt.Errorf("max_workers = %d, %d clients: %w", w, c, err)
			}
			if first == 0 || f < first {
				first = f
			}
			last = max(last, l)
			r.addRows(&b.tbl)
		}
	}
	return b.submittersCleanUp(first, last)
}

func submitHow(secs int) string {
	return fmt.Sprintf("pgbench -n -c N -j N -T %d (BENCH_SUBMIT_SECONDS) as role bench, each transaction one `SELECT lantern.async_task(...)` "+
		"of an INSERT of (its xid, clock_timestamp()); max_workers set with ALTER SYSTEM + restart (max_worker_processes = %d, track_wal_io_timing = on). "+
		"Window = first → last submit commit. Start = the task's clock_timestamp() − its submit's commit timestamp; finished = commit timestamp of its row. "+
		"Backlog = submitted − finished by then. Drain = last submit commit → last finish. WAL per task: pg_stat_wal from before pgbench until the run's workers exited "+
		"(submits' and claims' flushes); fsync busy = wal_sync_time ÷ (first submit → last finish). CPU over pgbench's run: the machine (/proc/stat, shared with anything else running) "+
		"and the server's processes (/proc/<pid>/stat; exiting = gone from pg_stat_activity, exited = reaped meanwhile with the postmaster's own: "+
		"mostly pgbench's backends, which pgbench closes as it ends), in cores",
		secs, submitWorkerProcesses)
}

// submittersCleanUp puts back the settings and max_workers = 4, and
// removes the runs' rows so that later rows see the history they had.
func (b *bench) submittersCleanUp(first, last int64) error {
	for _, q := range []string{
		"ALTER SYSTEM RESET max_worker_processes",
		"ALTER SYSTEM RESET track_wal_io_timing",
	} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return err
		}
	}
	if err := b.setMaxWorkers(4); err != nil {
		return err
	}
	for _, q := range []string{
		fmt.Sprintf("DELETE FROM lantern.tasks WHERE jobid BETWEEN %d AND %d", first, last),
		"DROP TABLE bench.sub, bench.sub_control",
		"VACUUM ANALYZE lantern.tasks, lantern.task_owners",
	} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return fmt.Errorf("cleaning up: %s: %w", q, err)
		}
	}
	return nil
}

// addRows prints one configuration.
func (r submitRun) addRows(t *table) {
	l := fmt.Sprintf("max_workers = %d, %d clients: ", r.workers, r.clients)
	target := ""
	if r.clients == 8 {
		target = "p99 ≤ 5 ms"
	}
	t.add(l+"submitted", fmt.Sprintf("%.0f", float64(r.tasks)/r.windowS), "tasks/s", r.tasks, "")
	t.add("  finished in the window", fmt.Sprintf("%.0f", float64(r.finishedInWindow)/r.windowS), "tasks/s", r.finishedInWindow, "")
	t.add("  backlog at half the window / at its end", fmt.Sprintf("%d / %d", r.backlogHalf, r.backlogEnd), "tasks", 0, "")
	t.add("  drain after the window; finished over window + drain", fmt.Sprintf("%.2f s; %.0f/s", r.drainS, float64(r.tasks)/(r.windowS+r.drainS)), "", 0, "")
	t.add("  start − submit commit p50 / p99, started in the window", ms(r.p50W)+" / "+ms(r.p99W), "ms", r.startedInWindow, target)
	t.add("  start − submit commit p50 / p99, all", ms(r.p50)+" / "+ms(r.p99), "ms", r.tasks, "")
	per := func(v int64) string { return fmt.Sprintf("%.2f", float64(v)/float64(r.tasks)) }
	t.add("  WAL flushes (wal_sync) / writes per task", per(r.wal.syncs)+" / "+per(r.wal.writes), "per task", r.tasks, "")
	t.add("  mean fsync; fsync busy", fmt.Sprintf("%s ms; %.0f %%", ms(r.fsyncMS()), r.fsyncBusy()*100), "", int(r.wal.syncs), "")
	cores := func(s float64) string { return fmt.Sprintf("%.2f", s/r.cpuWindowS) }
	t.add("  CPU busy, whole machine", fmt.Sprintf("%s of %d (%.0f %%)", cores(r.machineS()), nCPU(), r.machineShare()*100), "cores", 0, "")
	t.add("  server processes (by backend_type)", r.server.perSecond(r.cpuWindowS), "cores", 0, "")
	t.add("  pgbench itself", cores(r.pgbenchS), "cores", 0, "")
	u := r.server
	backends := u.byKind["client backend"] + u.byKind[""] + u.exited
	t.add("  CPU per task: workers (÷ finished in the window); backends (÷ submitted)", fmt.Sprintf("%.0f; %.0f",
		u.byKind[backendWorker]/float64(max(r.finishedInWindow, 1))*1e6, backends/float64(r.tasks)*1e6), "µs", 0, "")
	t.add("  limit", r.limit(), "", 0, "")
}

func (r submitRun) fsyncMS() float64 {
	if r.wal.syncs == 0 {
		return 0
	}
	return r.wal.syncMS / float64(r.wal.syncs)
}

// fsyncBusy is the share of the run (first submit → last finish) spent
// in WAL fsyncs, which one WALWriteLock holder at a time issues.
func (r submitRun) fsyncBusy() float64 {
	return r.wal.syncMS / 1000 / (r.windowS + r.drainS)
}

func (r submitRun) machineS() float64 { return float64(r.machine.busy) / clockTicks }

func (r submitRun) machineShare() float64 {
	if r.machine.total == 0 {
		return 0
	}
	return float64(r.machine.busy) / float64(r.machine.total)
}

// limit names what ran out: the CPU when the machine was busy nearly all
// the time, the disk when one fsync followed another.
func (r submitRun) limit() string {
	cpu, disk := r.machineShare(), r.fsyncBusy()
	switch {
	case cpu >= 0.9 && cpu >= disk:
		return fmt.Sprintf("CPU (machine %.0f %% busy, fsync %.0f %%)", cpu*100, disk*100)
	case disk >= 0.9:
		return fmt.Sprintf("disk (fsync %.0f %% of the time, machine %.0f %%)", disk*100, cpu*100)
	}
	return fmt.Sprintf("neither saturated (machine %.0f %% busy, fsync %.0f %%)", cpu*100, disk*100)
}
