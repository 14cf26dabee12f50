package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The header printed above the table: the machine and the settings.

// header describes the machine and the settings.
type header struct {
	pgVersion, serverVersion string
	settings                 [][2]string
	loadStart, loadEnd       string
	restarted                int // max_workers after the restart, 0 if none
}

func (h *header) loadServer(ctx context.Context, su *pgx.Conn) error {
	if err := su.QueryRow(ctx, "SELECT version(), current_setting('server_version')").
		Scan(&h.pgVersion, &h.serverVersion); err != nil {
		return err
	}
	rows, err := su.Query(ctx, `SELECT name, setting || coalesce(unit, '') FROM pg_settings
		WHERE name IN ('lantern_async.max_workers', 'lantern_async.worker_idle_timeout',
		               'max_worker_processes', 'shared_buffers', 'fsync', 'synchronous_commit',
		               'track_commit_timestamp', 'wal_sync_method', 'maintenance_work_mem',
		               'max_parallel_maintenance_workers')
		ORDER BY name`)
	if err != nil {
		return err
	}
	h.settings, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var kv [2]string
		err := r.Scan(&kv[0], &kv[1])
		return kv, err
	})
	return err
}

func (h *header) print(w io.Writer, cfg config) {
	fmt.Fprintln(w, "lantern_async benchmark (make bench)")
	fmt.Fprintf(w, "machine:    %d CPUs (nproc), %s\n", runtime.NumCPU(), cpuModel())
	fmt.Fprintf(w, "load avg:   %s at the start, %s at the end (other work may share the machine)\n", h.loadStart, h.loadEnd)
	fmt.Fprintf(w, "PostgreSQL: %s\n", h.pgVersion)
	fmt.Fprintf(w, "Go:         %s (%s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	var s []string
	for _, kv := range h.settings {
		s = append(s, kv[0]+"="+kv[1])
	}
	fmt.Fprintf(w, "settings:   %s\n", strings.Join(s, " "))
	if h.restarted != 0 {
		fmt.Fprintf(w, "            rows 1-4, 7 and 10 ran with max_workers = 4; then ALTER SYSTEM + restart of the same cluster: max_workers = %d for rows 3 (1 worker), 5, 6, 8, 9 and 11\n", h.restarted)
	}
	fmt.Fprintf(w, "            cold start and cold run_after: worker_idle_timeout = 0; idle CPU, memory and warm run_after: 60s; otherwise the default (1s). All set with ALTER SYSTEM + pg_reload_conf()\n")
	only := "all"
	if cfg.only != nil {
		var keys []string
		for k := range cfg.only {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		only = strings.Join(keys, ",")
	}
	fmt.Fprintf(w, "            BENCH_TASKS=%d BENCH_INDEX_ROWS=%d BENCH_INDEX_RUNS=%d BENCH_INDEX_SERIAL=%s BENCH_FSYNC=%s BENCH_ONLY=%s\n",
		cfg.memTasks, cfg.indexRows, cfg.indexRuns, onOff(cfg.indexSerial), cfg.fsync, only)
	fmt.Fprintf(w, "latencies:  measured inside the server from commit timestamps and clock_timestamp(); percentiles are nearest-rank\n")
	fmt.Fprintln(w)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "CPU model unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "CPU model unknown"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
