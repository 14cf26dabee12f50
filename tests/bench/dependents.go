package main

import (
	"fmt"
	"time"
)

// Row 12: tasks waiting on a dependency. benchRole submits a blocker, a
// task for an hour later, then dependentTasks SELECT 1 tasks in one
// transaction with depends_on => {blocker}. Each is due at once: a claim
// checks its dependency, finds it pending, and takes it out of the claims'
// queue (task_owners.due NULL) until the blocker ends. Once all wait that
// way: how long the checks took, then row 8's SELECT 1 claim cost by the
// same role and by another, as in row 11. Canceled afterwards.

const dependentTasks = 10000

func (b *bench) dependents() error {
	blocker, first, last, err := b.submitDependents()
	if err != nil {
		return err
	}
	canceled := false
	defer func() {
		if !canceled { // a failure midway: later rows must not see them
			_, _ = b.user.Exec(b.ctx, "SELECT lantern.cancel_all_async_tasks()")
		}
	}()
	t0 := time.Now()
	if err := b.waitDependentsOutOfQueue(first, last); err != nil {
		return err
	}
	checked := time.Since(t0)
	progress("   dependents: %d tasks waiting on task %d after %.1f s", dependentTasks, blocker, checked.Seconds())
	same, another, err := b.claimsBeside(first, last)
	if err != nil {
		return err
	}
	b.dependentsRows(checked, same, another)
	canceled = true
	_, err = b.user.Exec(b.ctx, "SELECT lantern.cancel_all_async_tasks()")
	return err
}

// submitDependents queues the blocker, then the dependents in one transaction.
func (b *bench) submitDependents() (blocker, first, last int64, err error) {
	if err = b.user.QueryRow(b.ctx, "SELECT lantern.async_task('SELECT 1', run_after => now() + interval '1 hour')").Scan(&blocker); err != nil {
		return 0, 0, 0, err
	}
	err = b.user.QueryRow(b.ctx, `SELECT min(j), max(j) FROM (
		SELECT lantern.async_task('SELECT 1', depends_on => ARRAY[$1::bigint]) AS j
		FROM generate_series(1, $2) i) s`, blocker, dependentTasks).Scan(&first, &last)
	if err == nil && last-first+1 != dependentTasks {
		err = fmt.Errorf("jobids %d..%d for %d tasks", first, last, dependentTasks)
	}
	return blocker, first, last, err
}

// waitDependentsOutOfQueue waits until a claim has checked every
// dependent: none is left in the claims' queue.
func (b *bench) waitDependentsOutOfQueue(first, last int64) error {
	return poll(b.ctx, 50*time.Millisecond, 10*time.Minute, "the dependents checked", func() (bool, error) {
		var n int
		err := b.su.QueryRow(b.ctx, `SELECT count(*) FROM lantern.task_owners
			WHERE jobid BETWEEN $1 AND $2 AND due IS NOT NULL`, first, last).Scan(&n)
		return n == 0, err
	})
}

func (b *bench) dependentsRows(checked time.Duration, same, another string) {
	b.tbl.section("12", "tasks waiting on a dependency", fmt.Sprintf("%d × SELECT 1 of one role submitted in one transaction with depends_on => {a task for an hour later}; checked: from the submit's commit until a claim had checked each and taken it out of the claims' queue (max_workers = 1); claim: as row 8 (%d × SELECT 1, one worker) with all %d still waiting, by the same role and by another; canceled afterwards",
		dependentTasks, costTasks, dependentTasks))
	b.tbl.add(fmt.Sprintf("%d dependents checked", dependentTasks), fmt.Sprintf("%.2f", checked.Seconds()), "s", dependentTasks, "")
	b.tbl.add("  per dependent", fmt.Sprintf("%.1f", float64(checked.Microseconds())/dependentTasks), "µs", dependentTasks, "")
	b.tbl.add("claim, the waiting tasks' role", same, "µs", costTasks, "")
	b.tbl.add("claim, another role", another, "µs", costTasks, "")
	if v, ok := b.tbl.figures[costsClaimFigure]; ok {
		b.tbl.add("claim, none waiting (row 8, this run)", fmt.Sprintf("%.1f", v), "µs", costTasks, "")
	}
}
