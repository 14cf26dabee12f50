// Command river-bench measures River (github.com/riverqueue/river with
// riverpgxv5) the way tests/bench measures lantern_async, for the bench's
// row 14: the same server, the same tasks, the same method.
//
//	river-bench -dsn 'host=/tmp/x dbname=river user=postgres' > figures.json
//
// For each mode (River tuned: FetchCooldown and FetchPollInterval at
// River's minimum, 1 ms; River's defaults: 100 ms and 1 s), with one queue
// of 4 workers whose jobs run their SQL through the program's pgx pool:
//   - idle CPU: the program's and its backends' utime + stime over -idle
//     with nothing to do (the server must be on this machine);
//   - start latency: -samples jobs, each inserted alone in its own
//     transaction once the previous one has completed (+ -gap); start =
//     the clock_timestamp() the job's INSERT writes − the commit timestamp
//     of the inserting transaction (track_commit_timestamp = on);
//   - throughput: -jobs `SELECT 1` jobs inserted in one transaction
//     (InsertManyTx); its commit → the latest commit timestamp of the
//     jobs' completed rows (and → the latest finalized_at).
//
// It lives in a module of its own so that the extension's module never
// requires River. It migrates River's schema (rivermigrate) into the
// database of -dsn, which should be one of its own. The figures go to
// stdout as JSON, progress to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/riverqueue/river"
)

// figures is the program's output.
type figures struct {
	RiverVersion string `json:"river_version"`
	Workers      int    `json:"workers"`
	PoolMaxConns int32  `json:"pool_max_conns"`
	Modes        []mode `json:"modes"`
}

// mode holds one mode's measurements; latencies in milliseconds, in
// sample order.
type mode struct {
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

// options are the command line's settings.
type options struct {
	dsn      string
	samples  int
	jobs     int
	workers  int
	poolSize int
	gap      time.Duration
	idle     time.Duration
	modes    []string
}

func parseOptions() (options, error) {
	var o options
	var modes string
	flag.StringVar(&o.dsn, "dsn", "", "connection string of River's database (required)")
	flag.IntVar(&o.samples, "samples", 200, "start latency samples per mode")
	flag.IntVar(&o.jobs, "jobs", 5000, "SELECT 1 jobs of the throughput run per mode")
	flag.IntVar(&o.workers, "workers", 4, "MaxWorkers of River's queue")
	flag.IntVar(&o.poolSize, "pool", 10, "the pgx pool's MaxConns (River's own connections and the jobs' SQL)")
	flag.DurationVar(&o.gap, "gap", 10*time.Millisecond, "pause between a job's completion and the next insert")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "idle CPU window of River's side before the latency run (0: none)")
	flag.StringVar(&modes, "modes", "tuned,defaults", "modes to run, in order: tuned, defaults")
	flag.Parse()
	if o.dsn == "" {
		return o, errors.New("-dsn is required")
	}
	if o.samples < 1 || o.jobs < 1 || o.workers < 1 || o.poolSize < o.workers+2 {
		return o, fmt.Errorf("want -samples, -jobs, -workers >= 1 and -pool >= workers + 2 (got %d, %d, %d, %d)",
			o.samples, o.jobs, o.workers, o.poolSize)
	}
	for _, m := range strings.Split(modes, ",") {
		if m != "tuned" && m != "defaults" {
			return o, fmt.Errorf("-modes: unknown %q (tuned, defaults)", m)
		}
		o.modes = append(o.modes, m)
	}
	return o, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "river-bench: FAIL: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	o, err := parseOptions()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()

	if err := prepare(ctx, o.dsn); err != nil {
		return fmt.Errorf("preparing the database: %w", err)
	}
	out := figures{RiverVersion: riverVersion(), Workers: o.workers, PoolMaxConns: int32(o.poolSize)}
	for _, name := range o.modes {
		progress("== River %s", name)
		m, err := measureMode(ctx, o, name)
		if err != nil {
			return fmt.Errorf("River %s: %w", name, err)
		}
		out.Modes = append(out.Modes, m)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// riverConfig is River's configuration of a mode: its defaults, or its
// shortest fetch intervals (River refuses anything under 1 ms).
func riverConfig(name string, workers int, w *river.Workers) *river.Config {
	cfg := &river.Config{
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers: w,
		Logger:  warnLogger(),
	}
	if name == "tuned" {
		cfg.FetchCooldown, cfg.FetchPollInterval = fetchIntervals(name)
	}
	return cfg
}

// fetchIntervals are the FetchCooldown and FetchPollInterval of a mode.
func fetchIntervals(name string) (cooldown, poll time.Duration) {
	if name == "tuned" {
		return river.FetchCooldownMin, river.FetchPollIntervalMin
	}
	return river.FetchCooldownDefault, river.FetchPollIntervalDefault
}

// riverVersion is the version of River this program was built with.
func riverVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/riverqueue/river" {
				return d.Version
			}
		}
	}
	return "unknown"
}

// progress prints a progress line to stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s river-bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
