package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
)

// Row 15b: where the floor of trivial tasks is, with max_workers = 4 and
// fsync on. floorTasks SELECT 1 queued in one transaction, run from no
// worker connected: what each costs in CPU (every server process, from
// /proc) and in WAL flushes (pg_stat_wal), how many tasks share a flush,
// the same with commit_delay (the claims' commits then wait to share a
// flush), the disk's own fsync latency (pg_test_fsync), and what 10,000
// tasks/s would need of both.

const (
	floorTasks = 5000
	floorGoal  = 10000.0 // tasks/s
	// floorCommitDelay is commit_delay's try, in µs; commit_siblings = 1
	// lets it apply whenever another transaction is open (another worker).
	floorCommitDelay = 100
)

// floorRun is one run of floorTasks.
type floorRun struct {
	secs       float64 // submit commit → last finish (commit timestamps)
	wal        walStat // the submit's own flush included
	server     cpuUse  // submit commit → all finished (the bench's clock)
	machine    machineCPU
	cpuWindowS float64
}

func (r floorRun) perTaskUS(s float64) float64 { return s / floorTasks * 1e6 }

func (b *bench) floor() error {
	if err := b.reloadWith("ALTER SYSTEM SET track_wal_io_timing = on"); err != nil {
		return err
	}
	plain, err := b.floorOnce()
	if err != nil {
		return err
	}
	if err := b.reloadWith(fmt.Sprintf("ALTER SYSTEM SET commit_delay = %d", floorCommitDelay),
		"ALTER SYSTEM SET commit_siblings = 1"); err != nil {
		return err
	}
	delayed, err := b.floorOnce()
	if err != nil {
		return err
	}
	if err := b.reloadWith("ALTER SYSTEM RESET commit_delay", "ALTER SYSTEM RESET commit_siblings",
		"ALTER SYSTEM RESET track_wal_io_timing"); err != nil {
		return err
	}
	diskUS, err := b.testFsync()
	if err != nil {
		return err
	}
	b.floorRows(plain, delayed, diskUS)
	return nil
}

// reloadWith runs the ALTER SYSTEM statements qs and reloads. The next
// run's workers start after it, so they read the new settings.
func (b *bench) reloadWith(qs ...string) error {
	for _, q := range append(qs, "SELECT pg_reload_conf()") {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	// A reload reaches the backends at their next command; give the
	// postmaster time to signal them (nothing here is timed by it).
	return sleep(b.ctx, 200*time.Millisecond)
}

func (b *bench) floorOnce() (r floorRun, err error) {
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return r, err
	}
	wal0, err := b.snapWAL()
	if err != nil {
		return r, err
	}
	first, last, xid, err := b.submitBatch("SELECT 1", floorTasks)
	if err != nil {
		return r, err
	}
	m0, s0, err := b.snapCPU()
	if err != nil {
		return r, err
	}
	if err := b.waitDone(first, last, 10*time.Millisecond, 5*time.Minute, nil); err != nil {
		return r, err
	}
	m1, s1, err := b.snapCPU()
	if err != nil {
		return r, err
	}
	r.server, r.cpuWindowS = s1.since(s0), s1.at.Sub(s0.at).Seconds()
	r.machine = machineCPU{m1.busy - m0.busy, m1.total - m0.total}
	if err := b.su.QueryRow(b.ctx, `
		SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - pg_xact_commit_timestamp(`+xidExpr(3)+`))
		FROM lantern.tasks WHERE jobid BETWEEN $1 AND $2`, first, last, xid).Scan(&r.secs); err != nil {
		return r, err
	}
	// A worker adds its WAL counters to pg_stat_wal when it exits.
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return r, err
	}
	wal1, err := b.snapWAL()
	r.wal = wal1.since(wal0)
	return r, err
}

// fsyncLine matches pg_test_fsync's fdatasync line (the server's
// wal_sync_method on Linux) of its first section, one 8 kB write.
var fsyncLine = regexp.MustCompile(`^\s+fdatasync\s+([\d.]+) ops/sec\s+(\d+) usecs/op`)

// testFsync runs pg_test_fsync (pg_config --bindir) on the cluster's disk
// and returns fdatasync's µs per 8 kB write; it stops pg_test_fsync once
// that line is out (the rest takes another ten seconds).
func (b *bench) testFsync() (float64, error) {
	bindir, err := pgcluster.PGConfig("bindir")
	if err != nil {
		return 0, err
	}
	dir, err := b.c.ServerDir("lantern_async_fsync_")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(b.ctx, filepath.Join(bindir, "pg_test_fsync"), "-s", "2", "-f", filepath.Join(dir, "test.out"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := fsyncLine.FindStringSubmatch(sc.Text()); m != nil {
			return strconv.ParseFloat(m[2], 64)
		}
	}
	return 0, fmt.Errorf("pg_test_fsync printed no fdatasync line (%v)", sc.Err())
}

func (b *bench) floorRows(plain, delayed floorRun, diskUS float64) {
	b.tbl.section("15b", "the floor of trivial tasks", fmt.Sprintf("%d × SELECT 1 queued in one transaction, max_workers = 4, from no worker connected, fsync on, track_wal_io_timing = on; "+
		"throughput from commit timestamps; flushes from pg_stat_wal until the workers exited (the submit's one flush included); "+
		"CPU from the submit's commit until the bench saw all finished (polling every 10 ms): every server process (/proc), and the whole machine (/proc/stat, shared); "+
		"then the same with commit_delay = %d µs, commit_siblings = 1; the disk: pg_test_fsync -s 2 on the cluster's file system, one 8 kB write + fdatasync. "+
		"10,000/s on %d cores leaves %d µs of CPU per task; a flush every fsync (they do not overlap) carries at most 1/fsync flushes/s",
		floorTasks, floorCommitDelay, nCPU(), int(float64(nCPU())*1e6/floorGoal)))
	for _, c := range []struct {
		label string
		r     floorRun
	}{{"commit_delay = 0", plain}, {fmt.Sprintf("commit_delay = %d µs", floorCommitDelay), delayed}} {
		r := c.r
		b.tbl.add(c.label+": throughput", fmt.Sprintf("%.0f", floorTasks/r.secs), "tasks/s", floorTasks, "≥ 10,000/s")
		b.tbl.add("  WAL flushes (wal_sync) per task; tasks per flush", fmt.Sprintf("%.3f; %.2f", float64(r.wal.syncs)/floorTasks,
			floorTasks/float64(max(r.wal.syncs, 1))), "", int(r.wal.syncs), "")
		b.tbl.add("  mean fsync; fsync busy", fmt.Sprintf("%s ms; %.0f %%", ms(r.wal.syncMS/float64(max(r.wal.syncs, 1))), r.wal.syncMS/10/r.secs), "", int(r.wal.syncs), "")
		b.tbl.add("  CPU per task: server processes (by backend_type, µs)", perTask(r.server), "µs", floorTasks, "")
		b.tbl.add("  CPU per task: whole machine (shared)", fmt.Sprintf("%.0f", r.perTaskUS(float64(r.machine.busy)/clockTicks)), "µs", floorTasks, "")
	}
	b.floorNeeds(plain, diskUS)
}

// floorNeeds prints what 10,000 tasks/s would take, from the run without
// commit_delay.
func (b *bench) floorNeeds(r floorRun, diskUS float64) {
	cpuUS := r.perTaskUS(r.server.total)
	budgetUS := float64(nCPU()) * 1e6 / floorGoal
	perFlush := floorTasks / float64(max(r.wal.syncs, 1))
	serverFsyncUS := r.wal.syncMS * 1000 / float64(max(r.wal.syncs, 1))
	b.tbl.add("disk: pg_test_fsync, one 8 kB write + fdatasync", fmt.Sprintf("%.0f µs (%.0f/s)", diskUS, 1e6/diskUS), "", 0, "")
	b.tbl.add("CPU ceiling: cores ÷ server CPU per task", fmt.Sprintf("%.0f (%.0f µs per task, %.0f allowed)", float64(nCPU())*1e6/cpuUS, cpuUS, budgetUS), "tasks/s", 0, "")
	b.tbl.add("flush ceiling: tasks per flush ÷ fsync (the server's; pg_test_fsync's)", fmt.Sprintf("%.0f; %.0f", perFlush*1e6/serverFsyncUS, perFlush*1e6/diskUS), "tasks/s", 0, "")
	b.tbl.add("10,000/s needs: tasks per flush at the server's fsync; at pg_test_fsync's", fmt.Sprintf("%.1f; %.1f (now %.2f)", floorGoal*serverFsyncUS/1e6, floorGoal*diskUS/1e6, perFlush), "", 0, "")
}

// perTask lists u's kinds per task in µs.
func perTask(u cpuUse) string {
	return u.scaled(1e6/floorTasks, "%.0f", 1)
}
