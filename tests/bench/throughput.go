package main

import (
	"fmt"
	"time"
)

// Row 3: 1000 trivial tasks queued in one transaction; the time from its
// commit to the last task's finish (the latest commit timestamp of the
// task rows' final versions).

const throughputTasks = 1000

func (b *bench) throughput(maxWorkers int) error {
	// Start from no worker connected, so both runs include launching
	// their workers.
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return err
	}
	first, last, xid, err := b.submitBatch("SELECT 1", throughputTasks)
	if err != nil {
		return err
	}
	most := 0
	countWorkers := func() error {
		pids, err := b.pidsOf(backendWorker)
		most = max(most, len(pids))
		return err
	}
	if err := b.waitDone(first, last, 50*time.Millisecond, 5*time.Minute, countWorkers); err != nil {
		return err
	}
	var secs float64
	if err := b.su.QueryRow(b.ctx, `
		SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - pg_xact_commit_timestamp(`+xidExpr(3)+`))
		FROM lantern.tasks WHERE jobid BETWEEN $1 AND $2`, first, last, xid).Scan(&secs); err != nil {
		return err
	}
	b.tbl.section("3", "throughput", fmt.Sprintf("%d × SELECT 1 of one role queued in one transaction, from no worker connected; submit commit → latest commit timestamp of the task rows", throughputTasks))
	label := fmt.Sprintf("max_workers = %d", maxWorkers)
	b.tbl.add(label+": commit → last finished", ms(secs*1000), "ms", throughputTasks, "")
	target := ""
	if maxWorkers == 4 {
		target = "≥ 2000 tasks/s"
	}
	b.tbl.add(label+": throughput", fmt.Sprintf("%.0f", throughputTasks/secs), "tasks/s", throughputTasks, target)
	b.tbl.add(label+": most workers seen at once", fmt.Sprint(most), "processes", 0, "")
	return nil
}
