package main

import (
	"fmt"
	"time"
)

// Row 9 (last: it leaves a million rows behind): the claim's cost with a long history. The same costTasks trivial
// tasks as row 8, once as the table is and once after historyRows finished
// rows were added (the claim must only ever read the pending-rows index).

const historyRows = 1000000

func (b *bench) history() error {
	// The memory row left worker_idle_timeout at 60s: costsOf needs the
	// worker to exit soon after its last task.
	if err := b.setIdleTimeout(-1); err != nil {
		return err
	}
	reset, err := b.logWorkerCosts(benchRole)
	if err != nil {
		return err
	}
	defer reset()
	var before int64
	if err := b.su.QueryRow(b.ctx, "SELECT count(*) FROM lantern.tasks").Scan(&before); err != nil {
		return err
	}
	small, err := b.costsOf("SELECT 1")
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := b.su.Exec(b.ctx, fmt.Sprintf(`
		INSERT INTO lantern.tasks (query, username, status, duration, started_at)
		SELECT 'SELECT 1', '%s', 'succeeded', interval '1 ms', now() - interval '1 day'
		FROM generate_series(1, %d)`, benchRole, historyRows)); err != nil {
		return err
	}
	if _, err := b.su.Exec(b.ctx, "VACUUM ANALYZE lantern.tasks"); err != nil {
		return err
	}
	progress("   history: %d finished rows added in %.1f s", historyRows, time.Since(t0).Seconds())
	large, err := b.costsOf("SELECT 1")
	if err != nil {
		return err
	}
	b.tbl.section("9", "claim cost and history", fmt.Sprintf("as row 8 (%d × SELECT 1, one worker), with the table as it was and after %d finished rows were added (and VACUUM ANALYZE)", costTasks, historyRows))
	b.tbl.add(fmt.Sprintf("claim, %d rows in lantern.tasks", before), small[3], "µs", costTasks, "")
	b.tbl.add(fmt.Sprintf("claim, %d more finished rows", historyRows), large[3], "µs", costTasks, "")
	return nil
}
