package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Row 9 (last: it leaves the history behind): the claim's and the submit's
// cost per task as lantern.tasks grows. At each size, first a churn of
// BENCH_HISTORY_CHURN (20,000) SELECT 1 tasks, as a server that has been
// running tasks for a while has claimed them: each claim leaves a dead entry
// in the claims' queue index until a vacuum of its table removes it, and
// what vacuums that table when is what decides the claim's walk. Then, the
// best of historyRepeats: the claim as row 8 measures it (costTasks × SELECT 1
// run by one worker from none connected) and the submit (costTasks calls of
// lantern.async_task('SELECT 1') in one statement of a persistent session,
// timed inside the server: no commit, no round trip, the part that could
// grow), and the queue index pages a claim read. First with the table as it
// is, then after finished rows were added up to each of BENCH_HISTORY_ROWS
// (comma-separated totals, default 1,000,000 and 10,000,000). The rows look
// like what async_task and a final status leave: a task row that succeeded
// and its owner row (attempts 1, out of the claims' queue). autovacuum_naptime
// is 1 s meanwhile, so that autovacuum keeps up with the tables' own
// thresholds within the bench's seconds as it does within minutes by default.

var defaultHistorySizes = []int{1000000, 10000000}

const (
	defaultHistoryChurn = 20000
	historyRepeats      = 3
)

// historySizes reads BENCH_HISTORY_ROWS: increasing totals of finished rows.
func historySizes() ([]int, error) {
	s := os.Getenv("BENCH_HISTORY_ROWS")
	if s == "" {
		return defaultHistorySizes, nil
	}
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
			return nil, fmt.Errorf("BENCH_HISTORY_ROWS=%q: want increasing positive integers, comma-separated", s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// historyChurn reads BENCH_HISTORY_CHURN: tasks run before each measurement.
func historyChurn() (int, error) {
	s := os.Getenv("BENCH_HISTORY_CHURN")
	if s == "" {
		return defaultHistoryChurn, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("BENCH_HISTORY_CHURN=%q: want a number of tasks", s)
	}
	return n, nil
}

// historyCost is one size's figures: the best claim and submit, in µs per
// task, and the queue index pages a claim read then.
type historyCost struct {
	rows          int
	claim, submit float64
	// the worker's CPU time per task (its claims, and everything else a
	// task costs it), and the submitting backend's per submit, in µs
	workerCPU, submitCPU float64
	queuePages           float64
	load                 string
}

// minPositive is the smaller of a and b, or b when a is 0 (none yet).
func minPositive(a, b float64) float64 {
	if a == 0 || b < a {
		return b
	}
	return a
}

func (b *bench) history() error {
	sizes, err := historySizes()
	if err != nil {
		return err
	}
	churn, err := historyChurn()
	if err != nil {
		return err
	}
	restore, err := b.historySettings()
	if err != nil {
		return err
	}
	defer restore()
	conn, err := b.pgbench("SELECT 1;", "-C", "-t", "50")
	if err != nil {
		return err
	}
	var costs []historyCost
	added := 0
	for i := 0; i <= len(sizes); i++ {
		if i > 0 {
			if err := b.addHistory(sizes[i-1] - added); err != nil {
				return err
			}
			added = sizes[i-1]
		}
		if err := b.runChurn(churn); err != nil {
			return err
		}
		c, err := b.historyCostAt(added)
		if err != nil {
			return err
		}
		progress("   history: %d finished rows added: claim %.1f µs (%.1f queue index pages, worker CPU %.1f µs a task), submit %.1f µs (CPU %.1f µs) (load %s)",
			added, c.claim, c.queuePages, c.workerCPU, c.submit, c.submitCPU, c.load)
		costs = append(costs, c)
	}
	b.historyRows(costs, churn, conn)
	return nil
}

// ratioTo shows v and its ratio to base.
func ratioTo(v, base float64) string {
	return fmt.Sprintf("%.1f (%.2f×)", v, v/base)
}

func (b *bench) historyRows(costs []historyCost, churn int, conn pgbenchResult) {
	b.tbl.section("9", "claim and submit cost with a long history", fmt.Sprintf("at each size, %d SELECT 1 tasks run first (autovacuum_naptime = 1s); then the best of %d: the claim as row 8 (%d × SELECT 1, one worker), the queue index (task_owners_due_idx) pages a claim read, the worker's CPU time per task (/proc/<pid>/schedstat: it moves less with the machine's load than wall-clock figures do), and the submit: %d calls of async_task('SELECT 1') in one statement, timed in the server, and its backend's CPU time; with the table as it was, then after finished rows (a succeeded task and its owner row each, then VACUUM ANALYZE and CHECKPOINT) were added up to each size; ratio to the first; load: 1-minute load average when measured",
		churn, historyRepeats, costTasks, costTasks))
	for _, c := range costs {
		target := ""
		if c.rows > 0 {
			target = "≤ 1.2×"
		}
		b.tbl.add(fmt.Sprintf("claim, %d finished rows added (load %s)", c.rows, c.load), ratioTo(c.claim, costs[0].claim), "µs", costTasks, target)
		b.tbl.add("  queue index pages read per claim", fmt.Sprintf("%.1f", c.queuePages), "pages", costTasks, "")
		b.tbl.add("  the worker's CPU time per task", ratioTo(c.workerCPU, costs[0].workerCPU), "µs", costTasks, target)
		b.tbl.add(fmt.Sprintf("submit, %d finished rows added", c.rows), ratioTo(c.submit, costs[0].submit), "µs", costTasks, target)
		b.tbl.add("  its backend's CPU time per submit", ratioTo(c.submitCPU, costs[0].submitCPU), "µs", costTasks, target)
	}
	b.tbl.add("new connection + SELECT 1 in this row (pgbench -C)", ms(conn.latencyMS), "ms", conn.processed, "")
}

// historyCostAt measures the claim and the submit as the table is now,
// historyRepeats times each, and keeps the best (the least disturbed by
// the machine's other work).
func (b *bench) historyCostAt(rows int) (historyCost, error) {
	c := historyCost{rows: rows, load: strings.Fields(loadAvg())[0]}
	for i := 0; i < historyRepeats; i++ {
		pagesBefore, scansBefore, err := b.queueIndexReads()
		if err != nil {
			return c, err
		}
		// No worker left from before: the sampler counts every worker it sees.
		if err := b.waitQuiet(20 * time.Millisecond); err != nil {
			return c, err
		}
		cpu, err := b.sampleWorkerCPU()
		if err != nil {
			return c, err
		}
		m, err := b.costsOf("SELECT 1")
		workerCPU, workers := cpu.total()
		if err != nil {
			return c, err
		}
		if workers != 1 {
			return c, fmt.Errorf("%d workers ran the claim's tasks, want 1", workers)
		}
		claim, _ := strconv.ParseFloat(m[3], 64)
		claims, _ := strconv.Atoi(m[2])
		pages, err := b.queuePagesPerClaim(pagesBefore, scansBefore, claims)
		if err != nil {
			return c, err
		}
		submit, submitCPU, err := b.submitCost()
		if err != nil {
			return c, err
		}
		if i == 0 || claim < c.claim {
			c.claim, c.queuePages = claim, pages
		}
		c.workerCPU = minPositive(c.workerCPU, workerCPU.Seconds()*1e6/costTasks)
		if i == 0 || submit < c.submit {
			c.submit = submit
		}
		c.submitCPU = minPositive(c.submitCPU, submitCPU)
	}
	return c, nil
}

// submitCost times costTasks submits in one statement inside the server,
// and reads the CPU time its backend spent on them, both per submit in µs;
// then it waits for their tasks to run (so that the next claim starts from
// a quiet server).
func (b *bench) submitCost() (wall, cpu float64, err error) {
	tx, err := b.user.Begin(b.ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(b.ctx) //nolint:errcheck // no-op after Commit
	var t0 time.Time
	var pid int
	var first, last int64
	if err := tx.QueryRow(b.ctx, "SELECT clock_timestamp(), pg_backend_pid()").Scan(&t0, &pid); err != nil {
		return 0, 0, err
	}
	cpu0, err := cpuNanos(pid)
	if err != nil {
		return 0, 0, err
	}
	if err := tx.QueryRow(b.ctx, `SELECT min(j), max(j), extract(epoch FROM clock_timestamp() - $2::timestamptz) * 1e6
		FROM (SELECT lantern.async_task('SELECT 1') AS j FROM generate_series(1, $1)) s`, costTasks, t0).
		Scan(&first, &last, &wall); err != nil {
		return 0, 0, err
	}
	cpu1, err := cpuNanos(pid)
	if err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(b.ctx); err != nil {
		return 0, 0, err
	}
	if err := b.waitDone(first, last, 20*time.Millisecond, 5*time.Minute, nil); err != nil {
		return 0, 0, err
	}
	return wall / costTasks, float64(cpu1-cpu0) / 1e3 / costTasks, nil
}
