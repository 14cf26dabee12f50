package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Row 14: lantern_async beside River (github.com/riverqueue/river with
// riverpgxv5), the Go job queue a Go team would run next to PostgreSQL
// instead, in the same run on the same server. River's side is the
// program of tests/bench/river, a module of its own (the extension's
// module never requires River), run against a database of its own on
// this cluster; ours is measured here with the same method: row 5's idle
// CPU, row 1's start latency (200 tasks, each submitted alone once the
// previous one has finished, + warmGap) and row 3's throughput with
// riverJobs() queued SELECT 1, with max_workers = 4 as River's 4 workers.

const (
	riverDB = "river"
	// riverSeries is the kind of our latency tasks in bench.lat.
	riverSeries = "river_ours"
)

// riverFigures is what tests/bench/river prints (its figures type).
type riverFigures struct {
	RiverVersion string      `json:"river_version"`
	Workers      int         `json:"workers"`
	PoolMaxConns int         `json:"pool_max_conns"`
	Modes        []riverMode `json:"modes"`
}

type riverMode struct {
	Name                 string    `json:"name"`
	FetchCooldownMS      float64   `json:"fetch_cooldown_ms"`
	FetchPollIntervalMS  float64   `json:"fetch_poll_interval_ms"`
	StartMS              []float64 `json:"start_ms"`
	CompletedMS          []float64 `json:"completed_ms"`
	Jobs                 int       `json:"jobs"`
	CommitToCompletedSec float64   `json:"commit_to_last_completed_s"`
	CommitToFinalizedSec float64   `json:"commit_to_last_finalized_s"`
	IdleSec              float64   `json:"idle_s"`
	IdleCPUPercent       float64   `json:"idle_cpu_percent"`
}

// oursBeside is our side of row 14.
type oursBeside struct {
	start, finish []float64
	jobs          int
	secs          float64
	idlePercent   float64 // the launcher and one idle warm worker
}

// riverJobs is BENCH_RIVER_JOBS, the queued tasks of each side's
// throughput (default 5000; River's defaults run about 40 a second).
func riverJobs() (int, error) {
	s := os.Getenv("BENCH_RIVER_JOBS")
	if s == "" {
		return 5000, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("BENCH_RIVER_JOBS=%q: want a positive integer", s)
	}
	return n, nil
}

func (b *bench) riverBeside() error {
	jobs, err := riverJobs()
	if err != nil {
		return err
	}
	load := loadAvg()
	bin, cleanup, err := b.riverProgram()
	if err != nil {
		return err
	}
	defer cleanup()
	ours, err := b.oursBesideRiver(jobs)
	if err != nil {
		return err
	}
	theirs, err := b.runRiver(bin, jobs)
	if err != nil {
		return err
	}
	b.riverRows(ours, theirs, load)
	return nil
}

// riverProgram is BENCH_RIVER_BIN (make bench builds it), or else the
// program built from tests/bench/river into a temporary directory.
func (b *bench) riverProgram() (path string, cleanup func(), err error) {
	if p := os.Getenv("BENCH_RIVER_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", nil, fmt.Errorf("BENCH_RIVER_BIN: %w", err)
		}
		return p, func() {}, nil
	}
	src := filepath.Join("tests", "bench", "river")
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return "", nil, fmt.Errorf("River's program: %s/go.mod not found (run from the repository root, or set BENCH_RIVER_BIN to a `go -C tests/bench/river build` of it): %w", src, err)
	}
	dir, err := os.MkdirTemp("", "lantern_async_river_")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "river-bench")
	progress("   building River's program (%s; its modules may download)", src)
	cmd := exec.CommandContext(b.ctx, "go", "-C", src, "build", "-o", path, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building %s: %w\n%s", src, err, out)
	}
	return path, cleanup, nil
}

// oursBesideRiver measures our side: row 5's idle CPU, row 1's start
// latency after a first task (not a sample) made the worker, then row 3's
// throughput from no worker connected (so it includes forking the
// workers, which River's running client does not pay).
func (b *bench) oursBesideRiver(jobs int) (oursBeside, error) {
	o := oursBeside{jobs: jobs}
	var err error
	if o.idlePercent, err = b.idleBesideRiver(); err != nil {
		return o, err
	}
	job, _, err := b.submitOne(latencyQuery(riverSeries, 0))
	if err != nil {
		return o, err
	}
	if err := b.waitDone(job, job, 2*time.Millisecond, 30*time.Second, nil); err != nil {
		return o, err
	}
	o.start, o.finish, err = b.latencyRun(riverSeries, func() error { return sleep(b.ctx, warmGap) }, nil)
	if err != nil {
		return o, err
	}
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return o, err
	}
	first, last, xid, err := b.submitBatch("SELECT 1", jobs)
	if err != nil {
		return o, err
	}
	if err := b.waitDone(first, last, 50*time.Millisecond, 20*time.Minute, nil); err != nil {
		return o, err
	}
	err = b.su.QueryRow(b.ctx, `
		SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - pg_xact_commit_timestamp(`+xidExpr(3)+`))
		FROM lantern.tasks WHERE jobid BETWEEN $1 AND $2`, first, last, xid).Scan(&o.secs)
	return o, err
}

// runRiver runs River's program against a new database of this cluster
// (dropped afterwards) and reads its figures.
func (b *bench) runRiver(bin string, jobs int) (riverFigures, error) {
	var f riverFigures
	if _, err := b.su.Exec(b.ctx, "DROP DATABASE IF EXISTS "+riverDB+" WITH (FORCE)"); err != nil {
		return f, err
	}
	if _, err := b.su.Exec(b.ctx, "CREATE DATABASE "+riverDB); err != nil {
		return f, err
	}
	defer func() {
		if _, err := b.su.Exec(b.ctx, "DROP DATABASE IF EXISTS "+riverDB+" WITH (FORCE)"); err != nil {
			progress("warning: dropping database %s: %v", riverDB, err)
		}
	}()
	cmd := exec.CommandContext(b.ctx, bin, "-dsn", b.c.DSN(riverDB, superuser),
		"-samples", fmt.Sprint(latencySamples), "-jobs", fmt.Sprint(jobs),
		"-gap", warmGap.String(), "-idle", idleWindow.String(), "-workers", "4", "-modes", "tuned,defaults")
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return f, fmt.Errorf("%s: %w", bin, err)
	}
	// The two sides of the JSON are two copies of one type in two
	// modules: an unknown field or a missing figure is a mismatch.
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("reading %s's output: %w", bin, err)
	}
	return f, checkRiverFigures(f, jobs)
}

func checkRiverFigures(f riverFigures, jobs int) error {
	if len(f.Modes) != 2 {
		return fmt.Errorf("River's program: %d modes, want tuned and defaults", len(f.Modes))
	}
	for _, m := range f.Modes {
		if len(m.StartMS) != latencySamples || len(m.CompletedMS) != latencySamples || m.Jobs != jobs ||
			m.CommitToCompletedSec <= 0 || m.CommitToFinalizedSec <= 0 || m.IdleSec <= 0 {
			return fmt.Errorf("River's program: mode %q: %d/%d samples of %d, %d jobs of %d, %g s, %g s, idle %g s: a figure is missing",
				m.Name, len(m.StartMS), len(m.CompletedMS), latencySamples, m.Jobs, jobs,
				m.CommitToCompletedSec, m.CommitToFinalizedSec, m.IdleSec)
		}
	}
	return nil
}

// idleBesideRiver is row 5's idle CPU, launcher + one idle warm worker
// (worker_idle_timeout = 60s meanwhile, then the default again), in % of
// one core.
func (b *bench) idleBesideRiver() (float64, error) {
	launcher, worker, err := b.warmWorker()
	if err != nil {
		return 0, err
	}
	var before, after int64
	for _, p := range []int{launcher, worker} {
		t, err := cpuTicks(p)
		if err != nil {
			return 0, err
		}
		before += t
	}
	t0 := time.Now()
	if err := sleep(b.ctx, idleWindow); err != nil {
		return 0, err
	}
	elapsed := time.Since(t0).Seconds()
	for _, p := range []int{launcher, worker} {
		t, err := cpuTicks(p)
		if err != nil {
			return 0, fmt.Errorf("idle CPU: the launcher or the idle worker ended: %w", err)
		}
		after += t
	}
	return float64(after-before) / clockTicks / elapsed * 100, b.setIdleTimeout(-1)
}
