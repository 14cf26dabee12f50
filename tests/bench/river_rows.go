package main

import (
	"fmt"
	"strings"
)

// Row 14's rows: each system's figures, then River ÷ ours for latency and
// ours ÷ River for throughput.

// riverModeLabel names a River mode with its fetch intervals.
func riverModeLabel(m riverMode) string {
	return fmt.Sprintf("River %s (fetch %s / %s ms)", m.Name, trimFloat(m.FetchCooldownMS), trimFloat(m.FetchPollIntervalMS))
}

func trimFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}

func pair(a, b string) string { return a + " / " + b }

func quotient(a, b float64) string { return fmt.Sprintf("%.2f", a/b) }

func (b *bench) riverRows(ours oursBeside, f riverFigures, load string) {
	b.tbl.section("14", "River side by side", fmt.Sprintf("the same server in the same run; River %s with riverpgxv5, one queue of %d workers "+
		"whose jobs run their SQL through a pgx pool of %d connections (opened before measuring), in a database of its own; "+
		"tuned = FetchCooldown and FetchPollInterval at River's minimum, defaults = River's; ours with max_workers = 4. "+
		"Start as row 1 for both: each task (job) inserted alone in its own transaction once the previous one finished (+10 ms), "+
		"its INSERT of clock_timestamp() − the submit's (InsertTx's) commit timestamp; finished = commit of the final row version "+
		"(River commits completions in batches, every 50–250 ms). Throughput as row 3: SELECT 1 queued in one transaction "+
		"(InsertManyTx), commit → latest commit timestamp of the rows' final versions (River: also → its latest finalized_at); "+
		"ours from no worker connected (it forks its workers), River's client running. Idle: utime + stime (/proc) with nothing to do, after a first task; ours as row 5, River's program and its connections' backends. Ratios: River ÷ ours for latency, ours ÷ River for throughput",
		f.RiverVersion, f.Workers, f.PoolMaxConns))
	b.tbl.add("load average at the start of this row", load, "", 0, "")
	if c, ok := b.tbl.figures["connect_ms"]; ok {
		b.tbl.add("new connection + SELECT 1 (pgbench -C, row 4)", ms(c), "ms", 0, "")
	}
	b.tbl.add("lantern_async idle: launcher + one idle warm worker, as row 5", fmt.Sprintf("%.2f", ours.idlePercent), "% of a core", fmt.Sprintf("1 × %.0f s", idleWindow.Seconds()), "")
	for _, m := range f.Modes {
		b.tbl.add(riverModeLabel(m)+" idle: its program + its backends", fmt.Sprintf("%.2f", m.IdleCPUPercent), "% of a core", fmt.Sprintf("1 × %.0f s", m.IdleSec), "")
	}
	n := len(ours.start)
	p50, p99 := percentile(ours.start, 50), percentile(ours.start, 99)
	b.tbl.add("lantern_async: start − submit commit, p50 / p99", pair(ms(p50), ms(p99)), "ms", n, "")
	for _, m := range f.Modes {
		b.tbl.add(riverModeLabel(m)+": start − insert commit, p50 / p99",
			pair(ms(percentile(m.StartMS, 50)), ms(percentile(m.StartMS, 99))), "ms", len(m.StartMS), "")
	}
	b.tbl.add("lantern_async: finished − submit commit, p50 / p99",
		pair(ms(percentile(ours.finish, 50)), ms(percentile(ours.finish, 99))), "ms", n, "")
	for _, m := range f.Modes {
		b.tbl.add(riverModeLabel(m)+": completed − insert commit, p50 / p99",
			pair(ms(percentile(m.CompletedMS, 50)), ms(percentile(m.CompletedMS, 99))), "ms", len(m.CompletedMS), "")
	}
	for _, m := range f.Modes {
		target := ""
		if m.Name == "tuned" {
			target = "≥ 2×"
		}
		b.tbl.add(fmt.Sprintf("River %s ÷ lantern_async, start p50 / p99", m.Name),
			pair(quotient(percentile(m.StartMS, 50), p50), quotient(percentile(m.StartMS, 99), p99)), "×", 0, target)
	}
	b.riverThroughputRows(ours, f)
}

func (b *bench) riverThroughputRows(ours oursBeside, f riverFigures) {
	rate := float64(ours.jobs) / ours.secs
	b.tbl.add(fmt.Sprintf("lantern_async: %d × SELECT 1, commit → last finished", ours.jobs),
		fmt.Sprintf("%.0f", rate), "tasks/s", ours.jobs, "")
	for _, m := range f.Modes {
		b.tbl.add(fmt.Sprintf("%s: %d × SELECT 1, commit → last completed / last finalized_at", riverModeLabel(m), m.Jobs),
			pair(fmt.Sprintf("%.0f", float64(m.Jobs)/m.CommitToCompletedSec), fmt.Sprintf("%.0f", float64(m.Jobs)/m.CommitToFinalizedSec)),
			"tasks/s", m.Jobs, "")
	}
	for _, m := range f.Modes {
		target := ""
		if m.Name == "tuned" {
			target = "> 1×"
		}
		b.tbl.add(fmt.Sprintf("lantern_async ÷ River %s, throughput (completed / finalized_at)", m.Name),
			pair(quotient(rate, float64(m.Jobs)/m.CommitToCompletedSec), quotient(rate, float64(m.Jobs)/m.CommitToFinalizedSec)), "×", 0, target)
	}
}
