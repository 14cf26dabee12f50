// Command bench measures lantern_async on a throw-away local cluster and
// prints one table: every figure comes from one run on one server.
//
//	make bench                      # installs the extension, then runs this
//	BENCH_TASKS=20000 make bench    # fewer tasks for the memory row
//	BENCH_ONLY=warm,cold make bench # only some rows
//	BENCH_ONLY=delayed make bench   # only the start after run_after
//	BENCH_ONLY=waiting,costs make bench # 10,000 waiting tasks, and row 8
//
// Progress goes to stderr, the header and the table to stdout. Every
// latency is measured inside the server from commit timestamps
// (track_commit_timestamp = on) and clock_timestamp(); the bench only
// polls to know when to go on, never to time anything.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
)

const (
	dbName    = "postgres"
	superuser = "postgres"
	// benchRole submits every task; its tasks run logged in as it.
	benchRole = "bench"

	backendLauncher = "lantern_async launcher"
	backendWorker   = "lantern_async worker"
	backendScout    = "lantern_async scout"
)

// config holds what the environment may change.
type config struct {
	memTasks  int // BENCH_TASKS: tasks of the memory row
	indexRows int // BENCH_INDEX_ROWS: rows of the index-build table
	indexRuns int // BENCH_INDEX_RUNS: builds of each kind (session, task)
	// BENCH_INDEX_SERIAL=on: row 7 also builds with
	// max_parallel_maintenance_workers = 0 (the control)
	indexSerial bool
	fsync       string // BENCH_FSYNC: on (default) or off
	// BENCH_ONLY: the measurements to run (comma-separated keys of
	// run's steps); empty: all of them.
	only map[string]bool
}

// wants tells whether a step runs; the restart (key "") runs when any
// step after it does.
func (c config) wants(key string) bool {
	if c.only == nil {
		// The scaling table (row 9 and S1-S5) takes long and leaves
		// millions of rows, thousands of roles and databases: only when named.
		return key != "history" && key != "scale"
	}
	if key == "" {
		return c.only["throughput"] || c.only["costs"] || c.only["waiting"] || c.only["dependents"] || c.only["idle"] || c.only["memory"] || c.only["history"]
	}
	return c.only[key]
}

func loadConfig() (config, error) {
	cfg := config{memTasks: 100000, indexRows: 2000000, indexRuns: 5, fsync: "on"}
	for _, v := range []struct {
		name string
		dst  *int
	}{{"BENCH_TASKS", &cfg.memTasks}, {"BENCH_INDEX_ROWS", &cfg.indexRows}, {"BENCH_INDEX_RUNS", &cfg.indexRuns}} {
		if s := os.Getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return cfg, fmt.Errorf("%s=%q: want a positive integer", v.name, s)
			}
			*v.dst = n
		}
	}
	if s := os.Getenv("BENCH_FSYNC"); s != "" {
		if s != "on" && s != "off" {
			return cfg, fmt.Errorf("BENCH_FSYNC=%q: want on or off", s)
		}
		cfg.fsync = s
	}
	switch s := os.Getenv("BENCH_INDEX_SERIAL"); s {
	case "", "off":
	case "on":
		cfg.indexSerial = true
	default:
		return cfg, fmt.Errorf("BENCH_INDEX_SERIAL=%q: want on or off", s)
	}
	if s := os.Getenv("BENCH_ONLY"); s != "" {
		cfg.only = map[string]bool{}
		for _, k := range strings.Split(s, ",") {
			if k = strings.TrimSpace(k); isScaleKey(k) { // scale.go: "scale" and its sub-keys
				cfg.only[k], cfg.only["scale"] = true, true
				// The scaling table's first part is row 9 (claim and submit with a long history).
				cfg.only["history"] = cfg.only["history"] || k == "scale"
				continue
			}
			switch k {
			case "baselines", "warm", "cold", "delayed", "serverless", "throughput", "river", "floor", "submitters", "index", "costs", "waiting", "dependents", "idle", "memory", "history":
				cfg.only[k] = true
			default:
				return cfg, fmt.Errorf("BENCH_ONLY: unknown %q (baselines, warm, cold, delayed, serverless, throughput, river, floor, submitters, index, costs, waiting, dependents, idle, memory, history, scale, scale_pending, scale_roles, scale_databases, scale_cancel, scale_memory)", k)
			}
		}
	}
	return cfg, nil
}

// step is one measurement: its BENCH_ONLY key, its name in the progress
// lines, and what runs it.
type step struct {
	key, name string
	fn        func() error
}

// runSteps runs, in order, the steps that wants keeps.
func runSteps(steps []step, wants func(string) bool) error {
	for _, s := range steps {
		if !wants(s.key) {
			continue
		}
		progress("== %s", s.name)
		t0 := time.Now()
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		progress("   %s done in %.1f s", s.name, time.Since(t0).Seconds())
	}
	return nil
}

// bench is the state shared by the measurements.
type bench struct {
	ctx  context.Context
	cfg  config
	c    *pgcluster.Cluster
	su   *pgx.Conn // the bootstrap superuser
	user *pgx.Conn // benchRole
	tbl  table
	hdr  header
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: FAIL: %v\n", err)
		os.Exit(1)
	}
}

func run() (err error) {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if err := checkInstalled(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	limit := 60 * time.Minute
	if cfg.only["scale"] {
		limit = 3 * time.Hour // 10,000 roles alone took 31 minutes on a loaded machine
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	b := &bench{ctx: ctx, cfg: cfg}
	b.hdr.loadStart = loadAvg()
	progress("starting a cluster (lantern_async.max_workers = 4, track_commit_timestamp = on, fsync = %s)", cfg.fsync)
	b.c, err = pgcluster.Start(ctx, pgcluster.Options{
		Backend:    pgcluster.BackendLocal,
		MaxWorkers: 4,
		// Never in memory (the tests' default where /dev/shm has room):
		// the durable commits must reach a disk.
		OnDisk: true,
		ExtraConf: []string{
			"# added by tests/bench",
			"track_commit_timestamp = on",
			"fsync = " + cfg.fsync,
			"synchronous_commit = on",
		},
		Logf: progress,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(os.Stderr, "--- server log (tail) ---\n%s\n", b.c.LogTail(40))
		}
		b.closeConns()
		if cerr := b.c.Close(); cerr != nil {
			fmt.Fprintf(os.Stderr, "bench: warning: closing the cluster: %v\n", cerr)
		}
	}()
	if err := b.setup(); err != nil {
		return fmt.Errorf("setup: %w", err)
	}

	// Order: everything that wants max_workers = 4 first, then one restart
	// with max_workers = 1 for the rest (one worker must run the memory
	// row's tasks alone). The memory row goes last: it leaves the queue
	// table with BENCH_TASKS more rows.
	steps := []step{
		{"baselines", "baselines (pgbench)", b.baselines},
		{"warm", "warm start latency", b.warmLatency},
		{"cold", "cold start latency", b.coldLatency},
		{"delayed", "start after run_after", b.delayedStarts},
		{"serverless", "the serverless path", b.serverless},
		{"throughput", "throughput, 4 workers", func() error { return b.throughput(4) }},
		{"river", "River side by side (4 workers)", b.riverBeside},
		{"floor", "the floor of trivial tasks, 4 workers", b.floor},
		{"submitters", "concurrent submitters (restarts, back to max_workers = 4)", b.submitters},
		{"index", "index build overhead", b.indexOverhead},
		{"", "restart with max_workers = 1", func() error { return b.setMaxWorkers(1) }},
		{"throughput", "throughput, 1 worker", func() error { return b.throughput(1) }},
		{"costs", "per-task cost", b.costs},
		// After costs (row 11 prints row 8's claim next to its own), with
		// max_workers = 1 and the default worker_idle_timeout.
		{"waiting", "tasks waiting for their time", b.waiting},
		{"dependents", "tasks waiting on a dependency", b.dependents},
		{"idle", "idle CPU", b.idleCPU},
		{"memory", "worker memory", b.memory},
		{"history", "claim cost with a long history", b.history},
		{"scale", "the scaling table", b.scale}, // last: it leaves 1000s of databases and roles
	}
	if err := runSteps(steps, cfg.wants); err != nil {
		return err
	}
	b.hdr.loadEnd = loadAvg()
	b.tbl.ratios()
	b.hdr.print(os.Stdout, b.cfg)
	b.tbl.print(os.Stdout)
	return nil
}

// checkInstalled fails early, with the fix, when `make install` has not
// put the extension where the server will look.
func checkInstalled() error {
	pkglib, err := pgcluster.PGConfig("pkglibdir")
	if err != nil {
		return err
	}
	for _, f := range []string{"lantern_async.so", "lantern_async_go.so"} {
		if _, err := os.Stat(filepath.Join(pkglib, f)); err != nil {
			return fmt.Errorf("%s is not installed (run `make install`, or `make bench` which does it): %w",
				filepath.Join(pkglib, f), err)
		}
	}
	return nil
}

// setup creates the extension, the bench role and its schema, and reads
// the header's server facts.
func (b *bench) setup() error {
	if err := b.connect(); err != nil {
		return err
	}
	for _, q := range []string{
		"CREATE EXTENSION lantern_async",
		"CREATE ROLE " + benchRole + " LOGIN",
		"CREATE SCHEMA bench AUTHORIZATION " + benchRole,
		"GRANT USAGE ON SCHEMA lantern TO " + benchRole,
		"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lantern TO " + benchRole,
		"GRANT SELECT ON lantern.tasks TO " + benchRole,
	} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if err := b.reconnectUser(); err != nil {
		return err
	}
	if _, err := b.user.Exec(b.ctx, `
		CREATE TABLE bench.lat (kind text, seq int, ts timestamptz, PRIMARY KEY (kind, seq));
		CREATE TABLE bench.ins (v int)`); err != nil {
		return err
	}
	return b.hdr.loadServer(b.ctx, b.su)
}

// connect (re)opens the superuser connection, waiting for the server and
// its launcher (after a start or restart).
func (b *bench) connect() error {
	if b.su != nil {
		_ = b.su.Close(context.Background())
		b.su = nil
	}
	return poll(b.ctx, 50*time.Millisecond, 60*time.Second, "server accepting connections with its launcher", func() (bool, error) {
		if b.su == nil {
			conn, err := b.c.Connect(b.ctx, dbName, superuser)
			if err != nil {
				return false, nil
			}
			b.su = conn
		}
		pids, err := b.pidsOf(backendLauncher)
		if err != nil {
			_ = b.su.Close(context.Background())
			b.su = nil
			return false, nil
		}
		return len(pids) == 1, nil
	})
}

func (b *bench) reconnectUser() error {
	if b.user != nil {
		_ = b.user.Close(context.Background())
	}
	var err error
	b.user, err = b.c.Connect(b.ctx, dbName, benchRole)
	return err
}

func (b *bench) closeConns() {
	for _, c := range []*pgx.Conn{b.su, b.user} {
		if c != nil {
			_ = c.Close(context.Background())
		}
	}
}

// progress prints a progress line to stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
