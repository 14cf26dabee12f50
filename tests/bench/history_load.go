package main

import (
	"fmt"
	"time"
)

// Row 9's setup: the history it adds, the tasks it runs before measuring,
// the settings it needs, and the queue index statistics it reads.

// historyBatch is how many churn tasks go in one transaction.
const historyBatch = 5000

// historySettings makes workers exit at once after their last task (costsOf
// reads the costs line they log then; the memory row left 60s) and log
// their costs, and sets autovacuum_naptime = 1s; the returned function
// undoes the last two.
func (b *bench) historySettings() (restore func(), err error) {
	if err := b.setIdleTimeout(-1); err != nil {
		return nil, err
	}
	reset, err := b.logWorkerCosts(benchRole)
	if err != nil {
		return nil, err
	}
	for _, q := range []string{"ALTER SYSTEM SET autovacuum_naptime = '1s'", "SELECT pg_reload_conf()"} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			reset()
			return nil, err
		}
	}
	return func() {
		reset()
		_, _ = b.su.Exec(b.ctx, "ALTER SYSTEM RESET autovacuum_naptime")
		_, _ = b.su.Exec(b.ctx, "SELECT pg_reload_conf()")
	}, nil
}

// runChurn runs n SELECT 1 tasks, historyBatch per transaction.
func (b *bench) runChurn(n int) error {
	t0 := time.Now()
	for done := 0; done < n; {
		k := min(historyBatch, n-done)
		lo, hi, _, err := b.submitBatch("SELECT 1", k)
		if err != nil {
			return err
		}
		if err := b.waitDone(lo, hi, 50*time.Millisecond, 10*time.Minute, nil); err != nil {
			return err
		}
		done += k
	}
	if n > 0 {
		progress("   history: %d tasks run in %.1f s", n, time.Since(t0).Seconds())
	}
	return nil
}

// queueIndexReads returns the pages read from the claims' queue index
// (task_owners_due_idx) and its scans, as the statistics say now.
func (b *bench) queueIndexReads() (pages, scans int64, err error) {
	err = b.su.QueryRow(b.ctx, `SELECT pg_stat_clear_snapshot(), i.idx_blks_read + i.idx_blks_hit, s.idx_scan
		FROM pg_statio_all_indexes i JOIN pg_stat_all_indexes s USING (indexrelid)
		WHERE i.schemaname = 'lantern' AND i.indexrelname = 'task_owners_due_idx'`).Scan(nil, &pages, &scans)
	return pages, scans, err
}

// queuePagesPerClaim waits until the statistics show the claims' scans
// (a worker sends them when it exits), then returns the pages read per scan
// since pagesBefore and scansBefore.
func (b *bench) queuePagesPerClaim(pagesBefore, scansBefore int64, claims int) (float64, error) {
	var pages, scans int64
	err := poll(b.ctx, 20*time.Millisecond, 10*time.Second, "the worker's statistics", func() (bool, error) {
		var err error
		pages, scans, err = b.queueIndexReads()
		return scans-scansBefore >= int64(claims), err
	})
	if err != nil {
		return 0, err
	}
	return float64(pages-pagesBefore) / float64(scans-scansBefore), nil
}

// addHistory adds n finished tasks of benchRole, one INSERT per table, as
// async_task and a final status leave them, then vacuums, analyzes and
// checkpoints (the measurement must not pay for writing out the load).
func (b *bench) addHistory(n int) error {
	t0 := time.Now()
	var first int64
	if err := b.su.QueryRow(b.ctx, "SELECT nextval('lantern.tasks_jobid_seq')").Scan(&first); err != nil {
		return err
	}
	last := first + int64(n) - 1
	for _, q := range []string{
		fmt.Sprintf(`SELECT setval('lantern.tasks_jobid_seq', %d)`, last),
		fmt.Sprintf(`INSERT INTO lantern.tasks (jobid, query, username, started_at, duration, status)
			SELECT g, 'SELECT 1', '%s', now() - interval '1 day', interval '1 ms', 'succeeded'
			FROM generate_series(%d, %d) g`, benchRole, first, last),
		fmt.Sprintf(`INSERT INTO lantern.task_owners (jobid, roleid, datid, attempts)
			SELECT g, '%s'::regrole::oid, d.oid, 1 FROM generate_series(%d, %d) g,
			     pg_database d WHERE d.datname = current_database()`, benchRole, first, last),
		"VACUUM ANALYZE lantern.tasks",
		"VACUUM ANALYZE lantern.task_owners",
		"CHECKPOINT",
	} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return fmt.Errorf("adding %d finished rows: %w", n, err)
		}
	}
	progress("   history: %d finished rows added in %.1f s", n, time.Since(t0).Seconds())
	return nil
}
