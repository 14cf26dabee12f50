package main

import (
	"fmt"
	"time"
)

// Row 15's control: the same pgbench, clients and counters with a durable
// one-row INSERT (into bench.sub_control, as row 4's) instead of a submit,
// for a third of the time. What the
// server and the disk do without the extension: transactions/s, flushes
// and backend CPU per transaction.

func (b *bench) submitControl(clients, secs int) error {
	secs = max(1, secs/3)
	wal0, err := b.snapWAL()
	if err != nil {
		return err
	}
	m0, s0, err := b.snapCPU()
	if err != nil {
		return err
	}
	n := fmt.Sprint(clients)
	processed, _, err := b.pgbenchCPU("INSERT INTO bench.sub_control VALUES (1);", "-c", n, "-j", n, "-T", fmt.Sprint(secs))
	if err != nil {
		return err
	}
	m1, s1, err := b.snapCPU()
	if err != nil {
		return err
	}
	// A backend adds its WAL counters to pg_stat_wal at the latest when
	// it exits.
	if err := poll(b.ctx, 20*time.Millisecond, time.Minute, "pgbench's backends gone", func() (bool, error) {
		var left int
		err := b.su.QueryRow(b.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE usename = $1 AND backend_type = 'client backend' AND application_name = 'pgbench'`, benchRole).Scan(&left)
		return left == 0, err
	}); err != nil {
		return err
	}
	wal1, err := b.snapWAL()
	if err != nil {
		return err
	}
	u, w, window := s1.since(s0), wal1.since(wal0), s1.at.Sub(s0.at).Seconds()
	backends := u.byKind["client backend"] + u.byKind[""] + u.exited
	machine := float64(m1.busy-m0.busy) / float64(max(m1.total-m0.total, 1))
	t := &b.tbl
	t.add(fmt.Sprintf("control, durable one-row INSERT, %d clients, %d s: transactions", clients, secs),
		fmt.Sprintf("%.0f", float64(processed)/window), "per s", processed, "")
	t.add("  WAL flushes per transaction; mean fsync", fmt.Sprintf("%.2f; %s ms", float64(w.syncs)/float64(max(processed, 1)),
		ms(w.syncMS/float64(max(w.syncs, 1)))), "", int(w.syncs), "")
	t.add("  CPU per transaction: backends; machine busy", fmt.Sprintf("%.0f µs; %.0f %%", backends/float64(max(processed, 1))*1e6, machine*100), "", 0, "")
	return nil
}
