package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
)

// Row 4: what the server itself costs for comparison, measured with the
// real pgbench from `pg_config --bindir` (Debian's /usr/bin/psql and
// friends are Perl wrappers): a new connection that runs SELECT 1
// (pgbench -C), and a durable one-row INSERT on one connection.

const (
	connectTxns = 200
	insertTxns  = 1000
)

var (
	reLatency   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	reConnTime  = regexp.MustCompile(`(?m)^average connection time = ([0-9.]+) ms`)
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
)

// pgbenchResult is what a pgbench run reports.
type pgbenchResult struct {
	latencyMS float64
	connMS    float64 // -C only; 0 when not reported
	processed int
}

func (b *bench) pgbench(script string, args ...string) (pgbenchResult, error) {
	var r pgbenchResult
	bindir, err := pgcluster.PGConfig("bindir")
	if err != nil {
		return r, err
	}
	dir, err := os.MkdirTemp("", "lantern_async_bench_")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "script.sql")
	if err := os.WriteFile(file, []byte(script+"\n"), 0o644); err != nil {
		return r, err
	}
	args = append(append([]string{"-n", "-f", file}, args...), b.c.DSN(dbName, benchRole))
	cmd := exec.CommandContext(b.ctx, filepath.Join(bindir, "pgbench"), args...)
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	text := out.String()
	m := reLatency.FindStringSubmatch(text)
	p := reProcessed.FindStringSubmatch(text)
	if m == nil || p == nil {
		return r, fmt.Errorf("cannot read pgbench's output:\n%s", text)
	}
	r.latencyMS, _ = strconv.ParseFloat(m[1], 64)
	r.processed, _ = strconv.Atoi(p[1])
	if c := reConnTime.FindStringSubmatch(text); c != nil {
		r.connMS, _ = strconv.ParseFloat(c[1], 64)
	}
	return r, nil
}

// cleanEnv is the environment without libpq variables that could redirect
// pgbench.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

func (b *bench) baselines() error {
	conn, err := b.pgbench("SELECT 1;", "-C", "-t", fmt.Sprint(connectTxns))
	if err != nil {
		return err
	}
	ins, err := b.pgbench("INSERT INTO bench.ins VALUES (1);", "-t", fmt.Sprint(insertTxns))
	if err != nil {
		return err
	}
	b.tbl.section("4", "baselines", "pgbench from pg_config --bindir on the same server, as role bench over the unix socket; -C connects anew for each transaction; latency average as pgbench reports it")
	b.tbl.add("new connection + SELECT 1 (pgbench -C), latency average", ms(conn.latencyMS), "ms", conn.processed, "")
	if conn.connMS > 0 {
		b.tbl.add("  of which connection time (pgbench's average)", ms(conn.connMS), "ms", conn.processed, "")
	}
	b.tbl.add("durable one-row INSERT (synchronous_commit = on), latency average", ms(ins.latencyMS), "ms", ins.processed, "")
	b.tbl.set("connect_ms", conn.latencyMS)
	b.tbl.set("insert_ms", ins.latencyMS)
	return nil
}
