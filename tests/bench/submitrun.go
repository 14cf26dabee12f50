package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
)

// One configuration of row 15: a pgbench run, the drain, and the figures.

// submitScript is pgbench's transaction: one task that records its
// submit's xid and its own start. txid_current() is the submit's xid
// (async_task's INSERT needs one anyway).
func submitScript(run int) string {
	return fmt.Sprintf(`SELECT lantern.async_task(format('INSERT INTO bench.sub (run, xid, ts) VALUES (%d, %%s, clock_timestamp())', txid_current()));`, run)
}

// submitOnce runs one configuration and returns its figures and the
// jobids its tasks got.
func (b *bench) submitOnce(workers, clients, secs int) (r submitRun, first, last int64, err error) {
	r.workers, r.clients = workers, clients
	run := workers*1000 + clients
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return r, 0, 0, err
	}
	if err := b.su.QueryRow(b.ctx, "SELECT coalesce(max(jobid), 0) + 1 FROM lantern.tasks").Scan(&first); err != nil {
		return r, 0, 0, err
	}
	progress("   max_workers = %d, %d clients: %d s of submits", workers, clients, secs)
	wal0, err := b.snapWAL()
	if err != nil {
		return r, 0, 0, err
	}
	m0, s0, err := b.snapCPU()
	if err != nil {
		return r, 0, 0, err
	}
	n := fmt.Sprint(clients)
	processed, pgbCPU, err := b.pgbenchCPU(submitScript(run), "-c", n, "-j", n, "-T", fmt.Sprint(secs))
	if err != nil {
		return r, 0, 0, err
	}
	m1, s1, err := b.snapCPU()
	if err != nil {
		return r, 0, 0, err
	}
	r.tasks, r.pgbenchS = processed, pgbCPU.Seconds()
	r.machine = machineCPU{m1.busy - m0.busy, m1.total - m0.total}
	r.server, r.cpuWindowS = s1.since(s0), s1.at.Sub(s0.at).Seconds()
	if err := b.su.QueryRow(b.ctx, "SELECT max(jobid) FROM lantern.tasks").Scan(&last); err != nil {
		return r, 0, 0, err
	}
	progress("   %d submitted; draining", processed)
	if err := b.waitDone(first, last, 50*time.Millisecond, submitDrainTimeout, nil); err != nil {
		return r, 0, 0, err
	}
	// A worker adds its WAL counters to pg_stat_wal when it exits.
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return r, 0, 0, err
	}
	wal1, err := b.snapWAL()
	if err != nil {
		return r, 0, 0, err
	}
	r.wal = wal1.since(wal0)
	return r, first, last, b.submitFigures(run, &r)
}

func (b *bench) snapCPU() (machineCPU, serverCPU, error) {
	m, err := readMachineCPU()
	if err != nil {
		return m, serverCPU{}, err
	}
	s, err := b.snapServerCPU()
	return m, s, err
}

// submitFigures reads the run's latencies, window and backlog from
// bench.sub, and checks that every submit ran once.
func (b *bench) submitFigures(run int, r *submitRun) error {
	var rows, missing int
	err := b.su.QueryRow(b.ctx, `
		WITH s AS (
			SELECT pg_xact_commit_timestamp((xid % 4294967296)::text::xid) AS submitted,
			       ts AS started, pg_xact_commit_timestamp(xmin) AS finished
			FROM bench.sub WHERE run = $1),
		w AS (SELECT min(submitted) AS w0, max(submitted) AS w1,
		             min(submitted) + (max(submitted) - min(submitted)) / 2 AS half FROM s),
		l AS (SELECT *, extract(epoch FROM started - submitted) * 1000 AS lat FROM s, w)
		SELECT count(*), count(*) FILTER (WHERE submitted IS NULL OR finished IS NULL),
		       coalesce(extract(epoch FROM max(w1) - max(w0)), 0),
		       count(*) FILTER (WHERE finished <= w1),
		       count(*) FILTER (WHERE submitted <= half) - count(*) FILTER (WHERE finished <= half),
		       count(*) - count(*) FILTER (WHERE finished <= w1),
		       coalesce(extract(epoch FROM max(finished) - max(w1)), 0),
		       count(*) FILTER (WHERE started <= w1),
		       coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY lat) FILTER (WHERE started <= w1), 'NaN'),
		       coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY lat) FILTER (WHERE started <= w1), 'NaN'),
		       coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY lat), 'NaN'),
		       coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY lat), 'NaN')
		FROM l`, run).Scan(&rows, &missing, &r.windowS, &r.finishedInWindow, &r.backlogHalf, &r.backlogEnd,
		&r.drainS, &r.startedInWindow, &r.p50W, &r.p99W, &r.p50, &r.p99)
	if err != nil {
		return err
	}
	if rows != r.tasks || missing > 0 {
		return fmt.Errorf("%d submits, %d rows in bench.sub (%d without a commit timestamp): want one each", r.tasks, rows, missing)
	}
	if r.windowS <= 0 {
		return fmt.Errorf("%d submits in a window of %.3f s", r.tasks, r.windowS)
	}
	return nil
}

// pgbenchCPU runs pgbench as benchRole with script and args and returns
// the transactions it processed and its own CPU time.
func (b *bench) pgbenchCPU(script string, args ...string) (int, time.Duration, error) {
	bindir, err := pgcluster.PGConfig("bindir")
	if err != nil {
		return 0, 0, err
	}
	dir, err := os.MkdirTemp("", "lantern_async_bench_")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "script.sql")
	if err := os.WriteFile(file, []byte(script+"\n"), 0o644); err != nil {
		return 0, 0, err
	}
	args = append(append([]string{"-n", "-f", file}, args...), b.c.DSN(dbName, benchRole))
	cmd := exec.CommandContext(b.ctx, filepath.Join(bindir, "pgbench"), args...)
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	p := reProcessed.FindStringSubmatch(out.String())
	if p == nil {
		return 0, 0, fmt.Errorf("cannot read pgbench's output:\n%s", out.String())
	}
	n, _ := strconv.Atoi(p[1])
	return n, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}
