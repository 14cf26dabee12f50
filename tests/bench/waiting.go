package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Row 11: tasks waiting for their time. benchRole submits waitingTasks
// SELECT 1 tasks in one transaction with run_after = now() + waitingFirst
// + i × waitingStep (due over the following hour). Idle: once no worker or
// scout has been connected for waitingQuietFor, the launcher's CPU over
// idleWindow and the lantern_async processes seen meanwhile (0 expected:
// the launcher naps until the first due time). Claim: row 8's cost of a
// SELECT 1 claim with the waiting tasks still pending, by benchRole and by
// waitingOtherRole. The waiting tasks are canceled at the end.

const (
	waitingTasks = 10000
	waitingFirst = 10 * time.Minute
	waitingStep  = 360 * time.Millisecond // 10,000 × 0.36 s = 1 h
	// waitingQuietFor outlasts a worker the submit's commit may start (it
	// finds nothing due and leaves after worker_idle_timeout, 1 s) and a
	// scout that may follow it.
	waitingQuietFor  = 3 * time.Second
	waitingSample    = 20 * time.Millisecond
	waitingOtherRole = "bench_other"
)

// waitingIdle is the idle window's result.
type waitingIdle struct {
	launcherPct float64
	started     []string // "backend_type pid", each process seen once
	samples     int
}

func (b *bench) waiting() error {
	first, last, err := b.submitWaiting()
	if err != nil {
		return err
	}
	canceled := false
	defer func() {
		if !canceled { // a failure midway: later rows must not see them
			_, _ = b.user.Exec(b.ctx, "SELECT lantern.cancel_all_async_tasks()")
		}
	}()
	progress("   waiting: %d tasks queued (jobids %d..%d), waiting for no worker or scout for %v", waitingTasks, first, last, waitingQuietFor)
	t0 := time.Now()
	if err := b.waitQuietFor(50*time.Millisecond, waitingQuietFor); err != nil {
		return err
	}
	progress("   waiting: quiet for %v after %.1f s", waitingQuietFor, time.Since(t0).Seconds())
	idle, err := b.waitingIdleWindow()
	if err != nil {
		return err
	}
	same, another, err := b.claimsBeside(first, last)
	if err != nil {
		return err
	}
	b.waitingRows(idle, same, another)
	canceled = true
	return b.cancelWaiting(first, last)
}

// submitWaiting queues the waiting tasks as benchRole in one transaction.
func (b *bench) submitWaiting() (first, last int64, err error) {
	err = b.user.QueryRow(b.ctx, `SELECT min(j), max(j) FROM (
		SELECT lantern.async_task('SELECT 1', run_after => now() + $1::interval + i * $2::interval) AS j
		FROM generate_series(1, $3) i) s`,
		fmt.Sprintf("%d microseconds", waitingFirst.Microseconds()),
		fmt.Sprintf("%d microseconds", waitingStep.Microseconds()), waitingTasks).Scan(&first, &last)
	if err == nil && last-first+1 != waitingTasks {
		err = fmt.Errorf("jobids %d..%d for %d tasks", first, last, waitingTasks)
	}
	return first, last, err
}

// waitingIdleWindow measures the launcher's CPU over idleWindow while
// sampling pg_stat_activity for any other lantern_async process (a worker
// lives at least worker_idle_timeout, far longer than a sampling period).
func (b *bench) waitingIdleWindow() (waitingIdle, error) {
	var r waitingIdle
	launchers, err := b.pidsOf(backendLauncher)
	if err != nil {
		return r, err
	}
	if len(launchers) != 1 {
		return r, fmt.Errorf("want one launcher, have %v", launchers)
	}
	launcher := launchers[0]
	before, err := cpuTicks(launcher)
	if err != nil {
		return r, err
	}
	seen := map[string]bool{}
	t0 := time.Now()
	err = poll(b.ctx, waitingSample, idleWindow+time.Minute, "the idle window's end", func() (bool, error) {
		r.samples++
		procs, err := b.extProcNames()
		for _, p := range procs {
			if !seen[p] {
				seen[p] = true
				r.started = append(r.started, p)
			}
		}
		return time.Since(t0) >= idleWindow, err
	})
	if err != nil {
		return r, err
	}
	elapsed := time.Since(t0).Seconds()
	after, err := cpuTicks(launcher)
	if err != nil {
		return r, fmt.Errorf("the launcher (pid %d) after the idle window: %w", launcher, err)
	}
	r.launcherPct = float64(after-before) / clockTicks / elapsed * 100
	if len(r.started) > 0 {
		progress("   waiting: lantern_async processes seen in the idle window: %s", strings.Join(r.started, ", "))
	}
	return r, nil
}

// extProcNames names the connected lantern_async processes other than
// the launcher, one "backend_type pid (backend_start)" each.
func (b *bench) extProcNames() ([]string, error) {
	rows, err := b.su.Query(b.ctx, `SELECT format('%s %s (%s)', backend_type, pid, backend_start)
		FROM pg_stat_activity WHERE backend_type LIKE 'lantern_async%' AND backend_type <> $1`, backendLauncher)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// waitingClaim is row 8's SELECT 1 claim cost (µs, as logged) for role,
// whose tasks user submits.
func (b *bench) waitingClaim(role string, user *pgx.Conn) (string, error) {
	reset, err := b.logWorkerCosts(role)
	if err != nil {
		return "", err
	}
	defer reset()
	m, err := b.costsOfAs(user, "SELECT 1")
	if err != nil {
		return "", fmt.Errorf("%s: %w", role, err)
	}
	progress("   waiting: %s: %s", role, m[0])
	return m[3], nil
}

// otherUser creates waitingOtherRole, allowed to submit tasks, and
// connects as it.
func (b *bench) otherUser() (*pgx.Conn, error) {
	var exists bool
	if err := b.su.QueryRow(b.ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", waitingOtherRole).Scan(&exists); err != nil {
		return nil, err
	}
	if exists { // row 11 made it
		return b.c.Connect(b.ctx, dbName, waitingOtherRole)
	}
	for _, q := range []string{
		"CREATE ROLE " + waitingOtherRole + " LOGIN",
		"GRANT USAGE ON SCHEMA lantern TO " + waitingOtherRole,
		"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lantern TO " + waitingOtherRole,
	} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return b.c.Connect(b.ctx, dbName, waitingOtherRole)
}

// claimsBeside is row 8's SELECT 1 claim cost by benchRole and by
// waitingOtherRole while the tasks first..last wait; then it checks that
// none of them started meanwhile.
func (b *bench) claimsBeside(first, last int64) (same, another string, err error) {
	if same, err = b.waitingClaim(benchRole, b.user); err != nil {
		return "", "", err
	}
	other, err := b.otherUser()
	if err != nil {
		return "", "", err
	}
	defer other.Close(b.ctx)
	if another, err = b.waitingClaim(waitingOtherRole, other); err != nil {
		return "", "", err
	}
	return same, another, b.checkPending(first, last)
}

// checkPending fails unless every task first..last is still pending:
// none may have started early.
func (b *bench) checkPending(first, last int64) error {
	var n int64
	if err := b.su.QueryRow(b.ctx, `SELECT count(*) FROM lantern.tasks
		WHERE jobid BETWEEN $1 AND $2 AND status = 'pending'`, first, last).Scan(&n); err != nil {
		return err
	}
	if n != last-first+1 {
		return fmt.Errorf("%d of the %d tasks %d..%d are pending, want all", n, last-first+1, first, last)
	}
	return nil
}

// cancelWaiting cancels the waiting tasks as their role and checks that
// none is left pending.
func (b *bench) cancelWaiting(first, last int64) error {
	if _, err := b.user.Exec(b.ctx, "SELECT lantern.cancel_all_async_tasks()"); err != nil {
		return err
	}
	var n int
	if err := b.su.QueryRow(b.ctx, `SELECT count(*) FROM lantern.tasks
		WHERE jobid BETWEEN $1 AND $2 AND status <> 'canceled'`, first, last).Scan(&n); err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("%d of the %d waiting tasks are not canceled", n, waitingTasks)
	}
	return nil
}

func (b *bench) waitingRows(idle waitingIdle, same, another string) {
	b.tbl.section("11", "tasks waiting for their time", fmt.Sprintf("%d × SELECT 1 of one role submitted in one transaction with run_after = now() + %v + i × %v (i = 1..%d: due over an hour); idle: once no worker or scout had been connected for %v, the launcher's utime+stime (/proc/<pid>/stat) over %.0f s and the lantern_async processes other than the launcher seen in pg_stat_activity, sampled every %v; claim: as row 8 (%d × SELECT 1, one worker, max_workers = 1) with all %d still pending, by the same role and by another; canceled afterwards",
		waitingTasks, waitingFirst, waitingStep, waitingTasks, waitingQuietFor, idleWindow.Seconds(), waitingSample, costTasks, waitingTasks))
	window := fmt.Sprintf("1 × %.0f s", idleWindow.Seconds())
	b.tbl.add(fmt.Sprintf("idle with %d waiting: launcher", waitingTasks), fmt.Sprintf("%.2f", idle.launcherPct), "% of a core", window, "< 1 %")
	b.tbl.add("  lantern_async processes started", fmt.Sprint(len(idle.started)), "processes", idle.samples, "0")
	b.tbl.add("claim, the waiting tasks' role", same, "µs", costTasks, "")
	b.tbl.add("claim, another role", another, "µs", costTasks, "")
	if v, ok := b.tbl.figures[costsClaimFigure]; ok {
		b.tbl.add("claim, none waiting (row 8, this run)", fmt.Sprintf("%.1f", v), "µs", costTasks, "")
	} else {
		b.tbl.add("claim, none waiting (row 8)", "run with costs for the comparison", "", 0, "")
	}
}
