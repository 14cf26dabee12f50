package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The scaling table (BENCH_ONLY=scale, sections S1..S5): what a task costs
// when the server holds many pending tasks, roles or databases, against
// the same figure at the smallest size. Each section has a sub-key
// (scale_pending, scale_cancel, scale_memory, scale_roles,
// scale_databases); BENCH_ONLY=scale runs them all. Sizes come from the
// environment so that development runs stay small:
//
//	BENCH_SCALE_PENDING=1000000      S1, S4: the other role's pending tasks
//	BENCH_SCALE_MEMORY_TASKS=1000000 S5: tasks one worker runs
//	BENCH_SCALE_ROLES=1000,10000     S2: roles, one pending task each
//	BENCH_SCALE_DATABASES=1000,2000  S3: databases with the extension
//
// The sections run in this order on the one cluster, each leaving what
// the next can bear: S1 and S4 (which cancels what S1 left pending), S5
// (a restart with max_workers = 1 and back: before the databases, whose
// start sweep would take that one slot), S2, then S3; the launcher's
// memory is sampled after each of S2's and S3's sizes.

// scaleKeys are the sub-keys, in the order their sections run.
var scaleKeys = []string{"scale_pending", "scale_cancel", "scale_memory", "scale_roles", "scale_databases"}

// isScaleKey tells whether k is "scale" or one of its sub-keys.
func isScaleKey(k string) bool {
	if k == "scale" {
		return true
	}
	for _, s := range scaleKeys {
		if k == s {
			return true
		}
	}
	return false
}

// scaleConfig holds the sizes.
type scaleConfig struct {
	pending     int
	memoryTasks int
	roles       []int
	databases   []int
}

func loadScaleConfig() (scaleConfig, error) {
	c := scaleConfig{pending: 1000000, memoryTasks: 1000000, roles: []int{1000, 10000}, databases: []int{1000, 2000}}
	for _, v := range []struct {
		name string
		dst  *int
	}{{"BENCH_SCALE_PENDING", &c.pending}, {"BENCH_SCALE_MEMORY_TASKS", &c.memoryTasks}} {
		if s := os.Getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return c, fmt.Errorf("%s=%q: want a positive integer", v.name, s)
			}
			*v.dst = n
		}
	}
	for _, v := range []struct {
		name string
		dst  *[]int
	}{{"BENCH_SCALE_ROLES", &c.roles}, {"BENCH_SCALE_DATABASES", &c.databases}} {
		s := os.Getenv(v.name)
		if s == "" {
			continue
		}
		*v.dst = nil
		prev := 0
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= prev {
				return c, fmt.Errorf("%s=%q: want increasing positive integers, comma-separated", v.name, s)
			}
			*v.dst, prev = append(*v.dst, n), n
		}
	}
	return c, nil
}

// scaleWants tells whether the section of sub-key runs: all of them with
// "scale", else the sub-keys named.
func (b *bench) scaleWants(key string) bool {
	return b.cfg.only["scale"] && !b.anyScaleSubKey() || b.cfg.only[key]
}

func (b *bench) anyScaleSubKey() bool {
	for _, s := range scaleKeys {
		if b.cfg.only[s] {
			return true
		}
	}
	return false
}

// scale runs the scaling sections, only when BENCH_ONLY asks for them:
// at the default sizes they take far longer than the other rows (25
// minutes or more) and about 16 GB of disk.
func (b *bench) scale() error {
	sc, err := loadScaleConfig()
	if err != nil {
		return err
	}
	if err := b.ensureMaxWorkers(4); err != nil {
		return err
	}
	// Rows before may have left worker_idle_timeout at 60s.
	if err := b.setIdleTimeout(-1); err != nil {
		return err
	}
	steps := []step{
		{"scale_pending", "S1 start latency beside pending tasks", func() error { return b.scalePending(sc) }},
		{"scale_cancel", "S4 cancel_all_async_tasks of pending tasks", func() error { return b.scaleCancel(sc) }},
		{"scale_memory", "S5 worker memory over many tasks", func() error { return b.scaleWorkerMemory(sc) }},
		{"scale_roles", "S2 many roles", func() error { return b.scaleRoles(sc) }},
		{"scale_databases", "S3 many databases", func() error { return b.scaleDatabases(sc) }},
	}
	if err := runSteps(steps, b.scaleWants); err != nil {
		return err
	}
	b.scaleLauncherRows()
	return nil
}

// ensureMaxWorkers restarts with max_workers = n unless it is already.
func (b *bench) ensureMaxWorkers(n int) error {
	var got string
	if err := b.su.QueryRow(b.ctx, "SHOW lantern_async.max_workers").Scan(&got); err != nil {
		return err
	}
	if got == fmt.Sprint(n) {
		return nil
	}
	progress("   restart with max_workers = %d", n)
	return b.setMaxWorkers(n)
}

// ratio formats v / base as "×".
func ratio(v, base float64) string {
	if base <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

// withRatio formats a figure and its ratio to the smallest size's.
func withRatio(v, base float64, format string) string {
	return fmt.Sprintf(format+" (%s)", v, ratio(v, base))
}

// scaleRole creates a LOGIN role allowed to submit tasks (and to write
// into schema bench) unless it exists, and connects as it.
func (b *bench) scaleRole(name string) (*pgx.Conn, error) {
	var exists bool
	if err := b.su.QueryRow(b.ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		for _, q := range []string{
			"CREATE ROLE " + name + " LOGIN",
			"GRANT USAGE ON SCHEMA lantern TO " + name,
			"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lantern TO " + name,
		} {
			if _, err := b.su.Exec(b.ctx, q); err != nil {
				return nil, fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	return b.c.Connect(b.ctx, dbName, name)
}

// systemCPU reads the busy and total jiffies of /proc/stat's cpu line.
func systemCPU() (busy, total int64, err error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected %q", line)
	}
	for i, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

// cpuMeter measures the machine's busy share between start and stop.
type cpuMeter struct{ busy, total int64 }

func startCPU() (cpuMeter, error) {
	busy, total, err := systemCPU()
	return cpuMeter{busy, total}, err
}

// pct is the busy share of all cores since the start, in %.
func (m cpuMeter) pct() (float64, error) {
	busy, total, err := systemCPU()
	if err != nil || total == m.total {
		return 0, err
	}
	return float64(busy-m.busy) / float64(total-m.total) * 100, nil
}
