package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Row 7: a long statement, CREATE INDEX on BENCH_INDEX_ROWS md5 texts, run
// in a session and as a task, BENCH_INDEX_RUNS (5) times each, interleaved,
// with max_parallel_maintenance_workers at the server's default (a
// parallel build: the leader, a session's backend or a task's worker,
// sorts with parallel workers and waits for them) and, with
// BENCH_INDEX_SERIAL=on, again with it set to 0 in the block (a serial
// build, the control). Each run times itself inside the server: a DO block
// takes clock_timestamp() around EXECUTE 'CREATE INDEX ...' and inserts the
// seconds and the setting it ran with into bench.idx_times. A session run
// is a new connection of benchRole (as psql -c would be). Before each run
// the index is dropped and a CHECKPOINT taken (neither is timed). A task
// run is waited for with CALL lantern.wait_task, not by polling. While a
// run lasts a sampler on a connection of its own notes every parallel
// worker it sees (pg_stat_activity, every indexSampleEvery), so the row
// shows both kinds of run got the same help.

const indexSampleEvery = 50 * time.Millisecond

func indexBlock(kind string, run int, serial bool) string {
	set := ""
	if serial {
		set = "PERFORM pg_catalog.set_config('max_parallel_maintenance_workers', '0', true);\n  "
	}
	return fmt.Sprintf(`DO $b$
DECLARE t0 timestamptz;
BEGIN
  %st0 := clock_timestamp();
  EXECUTE 'CREATE INDEX idx_src_t ON bench.idx_src (t)';
  INSERT INTO bench.idx_times VALUES ('%s', %d, extract(epoch FROM clock_timestamp() - t0),
    current_setting('max_parallel_maintenance_workers')::int);
END
$b$`, set, kind, run)
}

// indexSeries is one variant's runs: seconds per run and the parallel
// workers seen during each.
type indexSeries struct {
	sess, task               []float64
	sessWorkers, taskWorkers []int
	setting                  []int // max_parallel_maintenance_workers each block saw
}

func (b *bench) indexOverhead() error {
	progress("   creating bench.idx_src with %d rows", b.cfg.indexRows)
	for _, q := range []string{
		"CREATE TABLE bench.idx_times (kind text, run int, secs float8, mpmw int)",
		fmt.Sprintf("CREATE TABLE bench.idx_src AS SELECT md5(i::text) AS t FROM generate_series(1, %d) i", b.cfg.indexRows),
		"VACUUM (FREEZE, ANALYZE) bench.idx_src",
	} {
		if _, err := b.user.Exec(b.ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	var def string
	if err := b.su.QueryRow(b.ctx, "SELECT boot_val FROM pg_settings WHERE name = 'max_parallel_maintenance_workers'").Scan(&def); err != nil {
		return err
	}
	par, err := b.indexRuns(false)
	if err != nil {
		return err
	}
	b.tbl.section("7", "long task overhead", fmt.Sprintf("CREATE INDEX on %d md5 texts; a DO block times EXECUTE 'CREATE INDEX' with clock_timestamp(); session runs on a new connection each, task runs waited for with CALL lantern.wait_task (no polling); session and task runs interleaved, CHECKPOINT before each; parallel workers sampled from pg_stat_activity every %v during each run", b.cfg.indexRows, indexSampleEvery))
	if base, ok := b.tbl.figures["connect_ms"]; ok {
		b.tbl.add("same run's new connection + SELECT 1 (row 4, pgbench -C)", ms(base), "ms", 0, "")
	}
	b.indexRows(fmt.Sprintf("parallel (max_parallel_maintenance_workers = %s, the default)", def), par)
	if b.cfg.indexSerial {
		ser, err := b.indexRuns(true)
		if err != nil {
			return err
		}
		b.indexRows("serial (max_parallel_maintenance_workers = 0)", ser)
	}
	return nil
}

// indexRuns runs the interleaved session and task builds of one variant.
func (b *bench) indexRuns(serial bool) (indexSeries, error) {
	var s indexSeries
	label := "parallel"
	if serial {
		label = "serial"
	}
	prepare := func() error {
		for _, q := range []string{"DROP INDEX IF EXISTS bench.idx_src_t", "CHECKPOINT"} {
			if _, err := b.su.Exec(b.ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}
	kindS, kindT := label+" session", label+" task"
	for run := 1; run <= b.cfg.indexRuns; run++ {
		if err := prepare(); err != nil {
			return s, err
		}
		progress("   %s run %d/%d: in a session", label, run, b.cfg.indexRuns)
		n, err := b.withWorkerSampler(func() error {
			return b.c.ExecAs(b.ctx, dbName, benchRole, indexBlock(kindS, run, serial))
		})
		if err != nil {
			return s, err
		}
		s.sessWorkers = append(s.sessWorkers, n)
		if err := prepare(); err != nil {
			return s, err
		}
		progress("   %s run %d/%d: as a task", label, run, b.cfg.indexRuns)
		n, err = b.withWorkerSampler(func() error {
			job, _, err := b.submitOne(indexBlock(kindT, run, serial))
			if err != nil {
				return err
			}
			// Waited for on the server, asleep until the task ends, as the
			// session run's client is: polling costs CPU the build needs
			// (one new connection every 50 ms took half a core here and
			// made a session's parallel build 55 % slower).
			if _, err := b.user.Exec(b.ctx, "CALL lantern.wait_task($1, '30 min', NULL)", job); err != nil {
				return err
			}
			return b.waitDone(job, job, 50*time.Millisecond, time.Minute, nil)
		})
		if err != nil {
			return s, err
		}
		s.taskWorkers = append(s.taskWorkers, n)
	}
	if err := prepare(); err != nil {
		return s, err
	}
	rows, err := b.su.Query(b.ctx, "SELECT kind, secs, mpmw FROM bench.idx_times WHERE kind IN ($1, $2) ORDER BY run, kind", kindS, kindT)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var secs float64
		var mpmw int
		if err := rows.Scan(&kind, &secs, &mpmw); err != nil {
			return s, err
		}
		if kind == kindT {
			s.task = append(s.task, secs)
		} else {
			s.sess = append(s.sess, secs)
		}
		s.setting = append(s.setting, mpmw)
	}
	if err := rows.Err(); err != nil {
		return s, err
	}
	if len(s.sess) != b.cfg.indexRuns || len(s.task) != b.cfg.indexRuns {
		return s, fmt.Errorf("%s: %d session and %d task timings, want %d each", label, len(s.sess), len(s.task), b.cfg.indexRuns)
	}
	return s, nil
}

// withWorkerSampler runs fn while a goroutine, on a connection of its own,
// counts the distinct parallel workers pg_stat_activity shows.
func (b *bench) withWorkerSampler(fn func() error) (int, error) {
	conn, err := b.c.Connect(b.ctx, dbName, superuser)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	seen := map[int]bool{}
	var serr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if err := sampleParallelWorkers(b.ctx, conn, seen); err != nil {
				serr = err
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(indexSampleEvery):
			}
		}
	}()
	err = fn()
	close(stop)
	wg.Wait()
	if err == nil {
		err = serr
	}
	return len(seen), err
}

func sampleParallelWorkers(ctx context.Context, conn *pgx.Conn, seen map[int]bool) error {
	rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'parallel worker'")
	if err != nil {
		return err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	for _, p := range pids {
		seen[p] = true
	}
	return err
}

// indexRows adds one variant's rows: medians, the spread (each run,
// fastest and slowest), the parallel workers each run got, and the overhead
// of the medians.
func (b *bench) indexRows(title string, s indexSeries) {
	medS, medT := percentile(s.sess, 50), percentile(s.task, 50)
	minS, minT := percentile(s.sess, 0), percentile(s.task, 0)
	b.tbl.add(title, "", "", 0, "")
	b.tbl.add("  in a session, median (fastest–slowest)", fmt.Sprintf("%.3f (%.3f–%.3f)", medS, minS, percentile(s.sess, 100)), "s", len(s.sess), "")
	b.tbl.add("    each run", secsList(s.sess), "s", len(s.sess), "")
	b.tbl.add("    parallel workers seen, each run", intList(s.sessWorkers), "", len(s.sess), "")
	b.tbl.add("  as a task, median (fastest–slowest)", fmt.Sprintf("%.3f (%.3f–%.3f)", medT, minT, percentile(s.task, 100)), "s", len(s.task), "")
	b.tbl.add("    each run", secsList(s.task), "s", len(s.task), "")
	b.tbl.add("    parallel workers seen, each run", intList(s.taskWorkers), "", len(s.task), "")
	b.tbl.add("  max_parallel_maintenance_workers seen by the builds", intSet(s.setting), "", len(s.setting), "")
	b.tbl.add("  overhead (task − session) / session, medians", fmt.Sprintf("%+.1f", (medT-medS)/medS*100), "%", len(s.sess), "≤ 1 %")
}

func secsList(v []float64) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.3f", x)
	}
	return s
}

func intList(v []int) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprint(x)
	}
	return s
}

// intSet lists the distinct values of v in the order first seen.
func intSet(v []int) string {
	var out []int
	seen := map[int]bool{}
	for _, x := range v {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return intList(out)
}
