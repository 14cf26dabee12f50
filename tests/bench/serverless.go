package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Row 13: the serverless path. A user who connects, submits one task and
// disconnects pays for a new backend's first call of lantern.async_task():
// compared with a plain one-row INSERT on a new connection (pgbench -C,
// alternated in rounds, so that both see the same load), and on one
// connection (pgbench without -C) for scale; then the start latency of
// tasks submitted from new connections, interleaved with tasks submitted
// from one persistent session (row 1's case), under the same load.

const (
	serverlessSubmit = "SELECT lantern.async_task('SELECT 1');"
	serverlessInsert = "INSERT INTO bench.plain (v) VALUES ('SELECT 1');"
	// serverlessPersistentTxns: transactions of each persistent pgbench run.
	serverlessPersistentTxns = 1000
)

// serverlessConfig is what BENCH_SERVERLESS_* change.
type serverlessConfig struct {
	rounds  int // BENCH_SERVERLESS_ROUNDS: pgbench -C rounds (insert and submit each)
	seconds int // BENCH_SERVERLESS_SECONDS: length of each pgbench -C run
	samples int // BENCH_SERVERLESS_SAMPLES: start-latency samples of each kind
}

func loadServerlessConfig() (serverlessConfig, error) {
	cfg := serverlessConfig{rounds: 3, seconds: 8, samples: 100}
	for _, v := range []struct {
		name string
		dst  *int
	}{{"BENCH_SERVERLESS_ROUNDS", &cfg.rounds}, {"BENCH_SERVERLESS_SECONDS", &cfg.seconds},
		{"BENCH_SERVERLESS_SAMPLES", &cfg.samples}} {
		if s := os.Getenv(v.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return cfg, fmt.Errorf("%s=%q: want a positive integer", v.name, s)
			}
			*v.dst = n
		}
	}
	return cfg, nil
}

// pgbenchSeries is the pgbench runs of one script.
type pgbenchSeries struct {
	latency, conn, cpu float64 // sums: latency average, connection time, server CPU ms per transaction
	runs, txns         int
}

func (s *pgbenchSeries) add(r pgbenchResult, cpuMS float64) {
	s.latency += r.latencyMS
	s.conn += r.connMS
	s.cpu += cpuMS / float64(max(r.processed, 1))
	s.runs++
	s.txns += r.processed
}

func (s pgbenchSeries) mean(sum float64) float64 { return sum / float64(max(s.runs, 1)) }

func (b *bench) serverless() error {
	cfg, err := loadServerlessConfig()
	if err != nil {
		return err
	}
	if _, err := b.user.Exec(b.ctx, "CREATE TABLE bench.plain (id bigserial PRIMARY KEY, v text)"); err != nil {
		return err
	}
	var before int64
	if err := b.su.QueryRow(b.ctx, "SELECT coalesce(max(jobid), 0) FROM lantern.tasks").Scan(&before); err != nil {
		return err
	}
	fresh, persistent, err := b.serverlessPgbench(cfg)
	if err != nil {
		return err
	}
	startFresh, startSession, err := b.serverlessStarts(cfg.samples)
	if err != nil {
		return err
	}
	b.serverlessRows(cfg, fresh, persistent, startFresh, startSession)
	return b.serverlessCleanup(before)
}

// serverlessPgbench alternates the two scripts, the order flipped every
// round: [0] is the INSERT, [1] the submit.
func (b *bench) serverlessPgbench(cfg serverlessConfig) (fresh, persistent [2]pgbenchSeries, err error) {
	scripts := [2]string{serverlessInsert, serverlessSubmit}
	for round := 0; round < cfg.rounds; round++ {
		for k := 0; k < 2; k++ {
			i := k ^ round%2
			progress("   serverless: round %d/%d, pgbench -C, %s", round+1, cfg.rounds, scripts[i])
			r, cpuMS, err := b.pgbenchCPU(scripts[i], "-C", "-T", fmt.Sprint(cfg.seconds))
			if err != nil {
				return fresh, persistent, err
			}
			fresh[i].add(r, cpuMS)
			r, cpuMS, err = b.pgbenchCPU(scripts[i], "-t", fmt.Sprint(serverlessPersistentTxns))
			if err != nil {
				return fresh, persistent, err
			}
			persistent[i].add(r, cpuMS)
		}
	}
	return fresh, persistent, nil
}

// pgbenchCPU runs pgbench and also returns the processor time the server
// used meanwhile, in ms: its postmaster's and reaped processes' time and
// the change of every live process's (pg_stat_activity lists backends,
// the extension's workers and the server's own processes).
func (b *bench) pgbenchCPU(script string, args ...string) (pgbenchResult, float64, error) {
	c0, err := b.serverCPUms()
	if err != nil {
		return pgbenchResult{}, 0, err
	}
	r, err := b.pgbench(script, args...)
	if err != nil {
		return r, 0, err
	}
	// What the last transactions left running (the worker on their tasks) counts too.
	if err := b.waitNoOpenTasks(); err != nil {
		return r, 0, err
	}
	c1, err := b.serverCPUms()
	return r, c1 - c0, err
}

func (b *bench) serverCPUms() (float64, error) {
	total := float64(b.c.ServerCPU()) / float64(time.Millisecond)
	rows, err := b.su.Query(b.ctx, "SELECT pid FROM pg_stat_activity")
	if err != nil {
		return 0, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		// A process may have ended since: its time is in ServerCPU once reaped.
		if t, err := cpuTicks(pid); err == nil {
			total += float64(t) * 1000 / clockTicks
		}
	}
	return total, nil
}

func (b *bench) waitNoOpenTasks() error {
	return poll(b.ctx, 5*time.Millisecond, 2*time.Minute, "no pending or running task", func() (bool, error) {
		var open bool
		err := b.su.QueryRow(b.ctx, `SELECT EXISTS (SELECT FROM lantern.tasks
			WHERE status IN ('pending', 'running'))`).Scan(&open)
		return !open, err
	})
}

// serverlessStarts alternates a submit from a new connection (closed right
// after its commit, as the serverless user does) with one from the
// persistent session, each waited for as row 1 waits, and returns both
// kinds' start − submit commit in ms.
func (b *bench) serverlessStarts(samples int) (fresh, session []float64, err error) {
	var seqs []int32
	var jobs, xids []int64
	for i := 1; i <= 2*samples; i++ {
		if err := sleep(b.ctx, warmGap); err != nil {
			return nil, nil, err
		}
		var job, xid int64
		if i%2 == 1 {
			job, xid, err = b.submitFromNewConnection(latencyQuery("serverless", i))
		} else {
			job, xid, err = b.submitOne(latencyQuery("serverless", i))
		}
		if err != nil {
			return nil, nil, err
		}
		if err := b.waitDone(job, job, 2*time.Millisecond, 30*time.Second, nil); err != nil {
			return nil, nil, err
		}
		seqs, jobs, xids = append(seqs, int32(i)), append(jobs, job), append(xids, xid)
		if i%100 == 0 {
			progress("   serverless starts: %d/%d", i, 2*samples)
		}
	}
	starts, err := b.startLatencies("serverless", seqs, jobs, xids)
	if err != nil {
		return nil, nil, err
	}
	for k, s := range starts {
		if seqs[k]%2 == 1 {
			fresh = append(fresh, s)
		} else {
			session = append(session, s)
		}
	}
	return fresh, session, nil
}

func (b *bench) submitFromNewConnection(query string) (jobid, xid int64, err error) {
	conn, err := b.c.Connect(b.ctx, dbName, benchRole)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(b.ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	if err := tx.QueryRow(b.ctx, "SELECT lantern.async_task($1), txid_current()", query).Scan(&jobid, &xid); err != nil {
		return 0, 0, err
	}
	return jobid, xid, tx.Commit(b.ctx)
}

// startLatencies is the task's clock_timestamp() − its submit's commit
// timestamp, in ms, in the order of seqs.
func (b *bench) startLatencies(kind string, seqs []int32, jobs, xids []int64) ([]float64, error) {
	rows, err := b.su.Query(b.ctx, `
		SELECT extract(epoch FROM l.ts - pg_xact_commit_timestamp((s.xid % 4294967296)::text::xid)) * 1000
		FROM unnest($1::int[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS s(seq, jobid, xid, n)
		JOIN bench.lat l ON l.kind = $4 AND l.seq = s.seq
		ORDER BY s.n`, seqs, jobs, xids, kind)
	if err != nil {
		return nil, err
	}
	starts, err := pgx.CollectRows(rows, pgx.RowTo[*float64])
	if err != nil {
		return nil, err
	}
	if len(starts) != len(seqs) {
		return nil, fmt.Errorf("%s: %d samples joined, want %d", kind, len(starts), len(seqs))
	}
	out := make([]float64, len(starts))
	for i, s := range starts {
		if s == nil {
			return nil, fmt.Errorf("%s: a commit timestamp is missing (track_commit_timestamp off?)", kind)
		}
		out[i] = *s
	}
	return out, nil
}

func (b *bench) serverlessRows(cfg serverlessConfig, fresh, persistent [2]pgbenchSeries, startFresh, startSession []float64) {
	b.tbl.section("13", "serverless path", fmt.Sprintf("as role bench: %q against %q into bench.plain (id bigserial PRIMARY KEY, v text), "+
		"pgbench from pg_config --bindir, %d rounds of -C -T %d for each, alternated (the order flipped each round), and after each a run of -t %d on one connection; "+
		"means of the runs' latency averages; server CPU = the postmaster's, its reaped processes' and its live processes' utime + stime over each run, until its tasks ended, per transaction; "+
		"then %d tasks submitted each from a new connection closed at once, alternated with %d from one persistent session, each waited for as in row 1 (+10 ms)",
		serverlessSubmit, serverlessInsert, cfg.rounds, cfg.seconds, serverlessPersistentTxns, cfg.samples, cfg.samples))
	ins, sub := fresh[0], fresh[1]
	b.tbl.add("new connection + INSERT (pgbench -C), latency average", ms(ins.mean(ins.latency)), "ms", ins.txns, "")
	b.tbl.add("new connection + async_task() (pgbench -C), latency average", ms(sub.mean(sub.latency)), "ms", sub.txns, "")
	b.tbl.add("  async_task() / INSERT, new connections", fmt.Sprintf("%.2f", sub.mean(sub.latency)/ins.mean(ins.latency)), "×", 0, "≤ 1.05")
	b.tbl.add("  of which connection time, INSERT / async_task()", ms(ins.mean(ins.conn))+" / "+ms(sub.mean(sub.conn)), "ms", 0, "")
	b.tbl.add("  server CPU per transaction, INSERT / async_task()", ms(ins.mean(ins.cpu))+" / "+ms(sub.mean(sub.cpu)), "ms", 0, "")
	pins, psub := persistent[0], persistent[1]
	b.tbl.add("one connection: INSERT / async_task(), latency average", ms(pins.mean(pins.latency))+" / "+ms(psub.mean(psub.latency)), "ms", pins.txns+psub.txns, "")
	b.tbl.add("  async_task() / INSERT, one connection", fmt.Sprintf("%.2f", psub.mean(psub.latency)/pins.mean(pins.latency)), "×", 0, "")
	b.tbl.add("start − submit commit from a new connection, p50", ms(percentile(startFresh, 50)), "ms", len(startFresh), "")
	b.tbl.add("start − submit commit from a new connection, p99", ms(percentile(startFresh, 99)), "ms", len(startFresh), "")
	b.tbl.add("start − submit commit from one session (alternated), p50", ms(percentile(startSession, 50)), "ms", len(startSession), "")
	b.tbl.add("start − submit commit from one session (alternated), p99", ms(percentile(startSession, 99)), "ms", len(startSession), "")
	if warm, ok := b.tbl.figures["warm_p50"]; ok {
		b.tbl.add("  row 1's warm start p50, for comparison", ms(warm), "ms", 0, "")
	}
}

// serverlessCleanup drops the row's table and deletes its tasks, leaving
// the queue as the row found it for the rows after it.
func (b *bench) serverlessCleanup(before int64) error {
	if err := b.waitNoOpenTasks(); err != nil {
		return err
	}
	for _, q := range []string{
		"DROP TABLE bench.plain",
		"DELETE FROM bench.lat WHERE kind = 'serverless'",
		fmt.Sprintf("DELETE FROM lantern.tasks WHERE jobid > %d", before),
		"VACUUM ANALYZE lantern.tasks, lantern.task_owners",
	} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}
