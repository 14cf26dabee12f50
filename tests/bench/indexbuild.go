package main

import (
	"fmt"
	"time"
)

// Row 7: a long statement, CREATE INDEX on BENCH_INDEX_ROWS md5 texts, run
// in a session and as a task, BENCH_INDEX_RUNS (3) times each, interleaved. Each run
// times itself inside the server: a DO block takes clock_timestamp()
// around EXECUTE 'CREATE INDEX ...' and inserts the seconds into
// bench.idx_times. A session run is a new connection of benchRole (as
// psql -c would be). Before each run the index is dropped and a
// CHECKPOINT taken (neither is timed).

func indexBlock(kind string, run int) string {
	return fmt.Sprintf(`DO $b$
DECLARE t0 timestamptz;
BEGIN
  t0 := clock_timestamp();
  EXECUTE 'CREATE INDEX idx_src_t ON bench.idx_src (t)';
  INSERT INTO bench.idx_times VALUES ('%s', %d, extract(epoch FROM clock_timestamp() - t0));
END
$b$`, kind, run)
}

func (b *bench) indexOverhead() error {
	progress("   creating bench.idx_src with %d rows", b.cfg.indexRows)
	for _, q := range []string{
		"CREATE TABLE bench.idx_times (kind text, run int, secs float8)",
		fmt.Sprintf("CREATE TABLE bench.idx_src AS SELECT md5(i::text) AS t FROM generate_series(1, %d) i", b.cfg.indexRows),
		"VACUUM (FREEZE, ANALYZE) bench.idx_src",
	} {
		if _, err := b.user.Exec(b.ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	prepare := func() error {
		for _, q := range []string{"DROP INDEX IF EXISTS bench.idx_src_t", "CHECKPOINT"} {
			if _, err := b.su.Exec(b.ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	}
	for run := 1; run <= b.cfg.indexRuns; run++ {
		if err := prepare(); err != nil {
			return err
		}
		progress("   run %d/%d: in a session", run, b.cfg.indexRuns)
		if err := b.c.ExecAs(b.ctx, dbName, benchRole, indexBlock("session", run)); err != nil {
			return err
		}
		if err := prepare(); err != nil {
			return err
		}
		progress("   run %d/%d: as a task", run, b.cfg.indexRuns)
		job, _, err := b.submitOne(indexBlock("task", run))
		if err != nil {
			return err
		}
		if err := b.waitDone(job, job, 50*time.Millisecond, 30*time.Minute, nil); err != nil {
			return err
		}
	}
	if err := prepare(); err != nil {
		return err
	}
	var sess, task []float64
	rows, err := b.su.Query(b.ctx, "SELECT kind, secs FROM bench.idx_times ORDER BY run, kind")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var secs float64
		if err := rows.Scan(&kind, &secs); err != nil {
			return err
		}
		if kind == "task" {
			task = append(task, secs)
		} else {
			sess = append(sess, secs)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(sess) != b.cfg.indexRuns || len(task) != b.cfg.indexRuns {
		return fmt.Errorf("%d session and %d task timings, want %d each", len(sess), len(task), b.cfg.indexRuns)
	}
	medS, medT := percentile(sess, 50), percentile(task, 50)
	b.tbl.section("7", "long task overhead", fmt.Sprintf("CREATE INDEX on %d md5 texts; a DO block times EXECUTE 'CREATE INDEX' with clock_timestamp(); session runs on a new connection each; session and task runs interleaved, CHECKPOINT before each", b.cfg.indexRows))
	b.tbl.add("in a session, median", fmt.Sprintf("%.3f", medS), "s", len(sess), "")
	b.tbl.add("  each run", secsList(sess), "s", len(sess), "")
	b.tbl.add("as a task, median", fmt.Sprintf("%.3f", medT), "s", len(task), "")
	b.tbl.add("  each run", secsList(task), "s", len(task), "")
	b.tbl.add("overhead (task − session) / session", fmt.Sprintf("%+.1f", (medT-medS)/medS*100), "%", b.cfg.indexRuns, "≤ 1 %")
	return nil
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
