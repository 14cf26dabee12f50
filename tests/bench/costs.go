package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Row 8: where a task's time goes inside a worker. A worker logs its costs
// when it exits (bgworker.Costs, at DEBUG1); ALTER ROLE ... SET
// log_min_messages = debug1 turns that on for benchRole's workers only.
// One worker (max_workers = 1) runs costTasks tasks of each kind, from no
// worker connected, and the line it logs is read back from the server log.

const costTasks = 1000

// costsClaimFigure names row 8's SELECT 1 claim cost among the table's figures.
const costsClaimFigure = "costs_claim_select1"

// costsLine matches bgworker.Costs.String.
var costsLine = regexp.MustCompile(`lantern_async worker: (\d+) tasks, (\d+) claims; per task in µs: ` +
	`claim ([\d.]+), execute ([\d.]+), reset ([\d.]+), record alone ([\d.]+) \((\d+) times\), ` +
	`the rest \(the Go loop\) ([\d.-]+); one near-empty call into PostgreSQL ([\d.]+) µs \((\d+) calls\)`)

// logWorkerCosts makes role's workers log their costs when they exit,
// until the returned function is called.
func (b *bench) logWorkerCosts(role string) (reset func(), err error) {
	if _, err := b.su.Exec(b.ctx, "ALTER ROLE "+role+" SET log_min_messages = debug1"); err != nil {
		return nil, err
	}
	return func() {
		_, _ = b.su.Exec(b.ctx, "ALTER ROLE "+role+" RESET log_min_messages")
	}, nil
}

func (b *bench) costs() error {
	reset, err := b.logWorkerCosts(benchRole)
	if err != nil {
		return err
	}
	defer reset()
	b.tbl.section("8", "per-task cost inside a worker", fmt.Sprintf("%d tasks of one kind run by one worker (max_workers = 1) from no worker connected; means per task from the worker's own clock, logged when it exits", costTasks))
	for _, k := range []struct{ label, query string }{
		{"SELECT 1 (its outcome goes in with the next claim)", "SELECT 1"},
		{"INSERT of one row (its success commits with it)", "INSERT INTO bench.ins VALUES (1)"},
	} {
		m, err := b.costsOf(k.query)
		if err != nil {
			return fmt.Errorf("%s: %w", k.query, err)
		}
		tasks, _ := strconv.Atoi(m[1])
		if k.query == "SELECT 1" {
			claim, _ := strconv.ParseFloat(m[3], 64)
			b.tbl.set(costsClaimFigure, claim) // row 11's comparison
		}
		b.tbl.add(k.label+": claim", m[3], "µs", tasks, "")
		b.tbl.add("  execute", m[4], "µs", tasks, "")
		b.tbl.add("  close to cancels + DISCARD ALL", m[5], "µs", tasks, "")
		b.tbl.add("  record the outcome alone", m[6]+" ("+m[7]+" times)", "µs", tasks, "")
		b.tbl.add("  the rest (Go loop, outcome values)", m[8], "µs", tasks, "")
		b.tbl.add("  one near-empty call Go → PostgreSQL", m[9], "µs", m[10]+" calls", "")
	}
	return nil
}

// costsOf runs costTasks copies of query as benchRole and returns the
// worker's costs line, matched.
func (b *bench) costsOf(query string) ([]string, error) {
	return b.costsOfAs(b.user, query)
}

// costsOfAs is costsOf with the tasks submitted on user's connection (its
// role must log its workers' costs: logWorkerCosts).
func (b *bench) costsOfAs(user *pgx.Conn, query string) ([]string, error) {
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return nil, err
	}
	logBefore := len(b.c.Log())
	first, last, _, err := b.submitBatchAs(user, query, costTasks)
	if err != nil {
		return nil, err
	}
	if err := b.waitDone(first, last, 20*time.Millisecond, 5*time.Minute, nil); err != nil {
		return nil, err
	}
	// The line comes when the worker exits, worker_idle_timeout after its last task.
	var m []string
	err = poll(b.ctx, 50*time.Millisecond, time.Minute, "the worker's costs in the server log", func() (bool, error) {
		log := b.c.Log()
		if len(log) < logBefore {
			logBefore = 0
		}
		for _, line := range strings.Split(log[logBefore:], "\n") {
			if m = costsLine.FindStringSubmatch(line); m != nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if m[1] != strconv.Itoa(costTasks) {
		return nil, fmt.Errorf("the worker ran %s tasks, want all %d (%s)", m[1], costTasks, m[0])
	}
	return m, nil
}
