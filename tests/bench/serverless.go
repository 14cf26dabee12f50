package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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
	// sums: latency average, connection time; server CPU ms and page faults per transaction
	latency, conn, cpu, faults float64
	runs, txns                 int
}

func (s *pgbenchSeries) add(r pgbenchResult, c serverCost) {
	s.latency += r.latencyMS
	s.conn += r.connMS
	s.cpu += c.cpuMS / float64(max(r.processed, 1))
	s.faults += c.faults / float64(max(r.processed, 1))
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
	starts, err := b.serverlessStarts(cfg.samples)
	if err != nil {
		return err
	}
	b.serverlessRows(cfg, fresh, persistent, starts)
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
			r, cost, err := b.pgbenchCost(scripts[i], "-C", "-T", fmt.Sprint(cfg.seconds))
			if err != nil {
				return fresh, persistent, err
			}
			fresh[i].add(r, cost)
			r, cost, err = b.pgbenchCost(scripts[i], "-t", fmt.Sprint(serverlessPersistentTxns))
			if err != nil {
				return fresh, persistent, err
			}
			persistent[i].add(r, cost)
		}
	}
	return fresh, persistent, nil
}

// serverCost is what the server's processes used: processor time and
// minor page faults (on this machine kind a page fault costs tens of µs,
// and counts do not depend on the load).
type serverCost struct {
	cpuMS  float64
	faults float64
}

// pgbenchCost runs pgbench and also returns what the server used
// meanwhile, until the tasks it queued ended (the worker's part counts).
func (b *bench) pgbenchCost(script string, args ...string) (pgbenchResult, serverCost, error) {
	c0, err := b.serverCost()
	if err != nil {
		return pgbenchResult{}, serverCost{}, err
	}
	r, err := b.pgbench(script, args...)
	if err != nil {
		return r, serverCost{}, err
	}
	if err := b.waitNoOpenTasks(); err != nil {
		return r, serverCost{}, err
	}
	c1, err := b.serverCost()
	return r, serverCost{c1.cpuMS - c0.cpuMS, c1.faults - c0.faults}, err
}

// serverCost sums the postmaster's own and its reaped children's figures
// (/proc/<pid>/stat: minflt, cminflt, utime, stime, cutime, cstime) and
// every live process's own (pg_stat_activity lists the backends, the
// extension's workers and the server's own processes). A process that
// ended between the two reads counts once: in its parent's.
func (b *bench) serverCost() (serverCost, error) {
	var cost serverCost
	var pm int
	if err := b.su.QueryRow(b.ctx, "SELECT pg_backend_pid()").Scan(&pm); err != nil {
		return cost, err
	}
	f, err := procStat(pm)
	if err != nil {
		return cost, err
	}
	pm = int(f[1]) // ppid: the postmaster
	if f, err = procStat(pm); err != nil {
		return cost, err
	}
	cost.faults = float64(f[7] + f[8])
	cost.cpuMS = float64(f[11]+f[12]+f[13]+f[14]) * 1000 / clockTicks
	rows, err := b.su.Query(b.ctx, "SELECT pid FROM pg_stat_activity")
	if err != nil {
		return cost, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return cost, err
	}
	for _, pid := range pids {
		if f, err := procStat(pid); err == nil {
			cost.faults += float64(f[7])
			cost.cpuMS += float64(f[11]+f[12]) * 1000 / clockTicks
		}
	}
	return cost, nil
}

// procStat returns /proc/<pid>/stat's numeric fields from field 3 on:
// f[0] is field 3 (state, 0 here), f[1] the ppid, f[7] minflt, f[8]
// cminflt, f[11] utime ... f[14] cstime.
func procStat(pid int) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, s)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, s)
	}
	out := make([]int64, 15)
	for k := 1; k < 15; k++ {
		if out[k], err = strconv.ParseInt(fields[k], 10, 64); err != nil {
			return nil, fmt.Errorf("/proc/%d/stat: field %d: %w", pid, k+3, err)
		}
	}
	return out, nil
}

func (b *bench) waitNoOpenTasks() error {
	return poll(b.ctx, 5*time.Millisecond, 2*time.Minute, "no pending or running task", func() (bool, error) {
		var open bool
		err := b.su.QueryRow(b.ctx, `SELECT EXISTS (SELECT FROM lantern.tasks
			WHERE status IN ('pending', 'running'))`).Scan(&open)
		return !open, err
	})
}

// The kinds of serverlessStarts' submits, in turn.
const (
	fromNewConnection   = iota // closed right after its commit, as the serverless user does
	fromNewConnKeptOpen        // closed once its task ended: the backend exits only after the start
	fromSession                // the persistent session (row 1's case)
	serverlessKinds
)

// serverlessStarts submits each kind in turn, each waited for as row 1
// waits, and returns each kind's start − submit commit in ms.
func (b *bench) serverlessStarts(samples int) (starts [serverlessKinds][]float64, err error) {
	var seqs []int32
	var jobs, xids []int64
	for i := 0; i < serverlessKinds*samples; i++ {
		if err := sleep(b.ctx, warmGap); err != nil {
			return starts, err
		}
		job, xid, err := b.serverlessSubmitAndWait(i%serverlessKinds, latencyQuery("serverless", i))
		if err != nil {
			return starts, err
		}
		seqs, jobs, xids = append(seqs, int32(i)), append(jobs, job), append(xids, xid)
		if (i+1)%100 == 0 {
			progress("   serverless starts: %d/%d", i+1, serverlessKinds*samples)
		}
	}
	all, err := b.startLatencies("serverless", seqs, jobs, xids)
	if err != nil {
		return starts, err
	}
	for k, s := range all {
		starts[k%serverlessKinds] = append(starts[k%serverlessKinds], s)
	}
	return starts, nil
}

func (b *bench) serverlessSubmitAndWait(kind int, query string) (jobid, xid int64, err error) {
	conn := b.user
	if kind != fromSession {
		if conn, err = b.c.Connect(b.ctx, dbName, benchRole); err != nil {
			return 0, 0, err
		}
		defer conn.Close(context.Background())
	}
	tx, err := conn.Begin(b.ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	if err := tx.QueryRow(b.ctx, "SELECT lantern.async_task($1), txid_current()", query).Scan(&jobid, &xid); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(b.ctx); err != nil {
		return 0, 0, err
	}
	if kind == fromNewConnection {
		if err := conn.Close(b.ctx); err != nil {
			return 0, 0, err
		}
	}
	return jobid, xid, b.waitDone(jobid, jobid, 2*time.Millisecond, 30*time.Second, nil)
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

func (b *bench) serverlessRows(cfg serverlessConfig, fresh, persistent [2]pgbenchSeries, starts [serverlessKinds][]float64) {
	b.tbl.section("13", "serverless path", fmt.Sprintf("as role bench: %q against %q into bench.plain (id bigserial PRIMARY KEY, v text), "+
		"pgbench from pg_config --bindir, %d rounds of -C -T %d for each, alternated (the order flipped each round), and after each a run of -t %d on one connection; "+
		"means of the runs' latency averages; server CPU and page faults = the postmaster's, its reaped processes' and its live processes' utime + stime and minor faults (/proc) over each run, until its tasks ended, per transaction; "+
		"then %d tasks of each kind, in turn: submitted from a new connection closed right after the commit, from a new connection closed once the task ended, and from one persistent session; each waited for as in row 1 (+10 ms)",
		serverlessSubmit, serverlessInsert, cfg.rounds, cfg.seconds, serverlessPersistentTxns, cfg.samples))
	ins, sub := fresh[0], fresh[1]
	b.tbl.add("new connection + INSERT (pgbench -C), latency average", ms(ins.mean(ins.latency)), "ms", ins.txns, "")
	b.tbl.add("new connection + async_task() (pgbench -C), latency average", ms(sub.mean(sub.latency)), "ms", sub.txns, "")
	b.tbl.add("  async_task() / INSERT, new connections", fmt.Sprintf("%.2f", sub.mean(sub.latency)/ins.mean(ins.latency)), "×", 0, "≤ 1.05")
	b.tbl.add("  of which connection time, INSERT / async_task()", ms(ins.mean(ins.conn))+" / "+ms(sub.mean(sub.conn)), "ms", 0, "")
	b.tbl.add("  server CPU per transaction, INSERT / async_task()", ms(ins.mean(ins.cpu))+" / "+ms(sub.mean(sub.cpu)), "ms", 0, "")
	b.tbl.add("  server page faults per transaction, INSERT / async_task()",
		fmt.Sprintf("%.0f / %.0f", ins.mean(ins.faults), sub.mean(sub.faults)), "", 0, "")
	pins, psub := persistent[0], persistent[1]
	b.tbl.add("one connection: INSERT / async_task(), latency average", ms(pins.mean(pins.latency))+" / "+ms(psub.mean(psub.latency)), "ms", pins.txns+psub.txns, "")
	b.tbl.add("  async_task() / INSERT, one connection", fmt.Sprintf("%.2f", psub.mean(psub.latency)/pins.mean(pins.latency)), "×", 0, "")
	for _, k := range []struct {
		kind int
		what string
	}{{fromNewConnection, "a new connection closed at once"}, {fromNewConnKeptOpen, "a new connection kept open"},
		{fromSession, "one session"}} {
		v := starts[k.kind]
		b.tbl.add("start − submit commit from "+k.what+", p50 / p99",
			ms(percentile(v, 50))+" / "+ms(percentile(v, 99)), "ms", len(v), "")
	}
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
