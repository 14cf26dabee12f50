package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// The River side: its schema, its client of a mode, and the two kinds of
// jobs, whose workers run the same SQL as the bench's lantern_async tasks
// through the program's pgx pool.

// latencyArgs is a start latency job: its worker inserts its start time
// as tests/bench's row 1 does.
type latencyArgs struct {
	Series string `json:"series"`
	Seq    int    `json:"seq"`
}

func (latencyArgs) Kind() string { return "bench_latency" }

type latencyWorker struct {
	river.WorkerDefaults[latencyArgs]
	pool *pgxpool.Pool
}

func (w *latencyWorker) Work(ctx context.Context, job *river.Job[latencyArgs]) error {
	_, err := w.pool.Exec(ctx, "INSERT INTO bench.lat (kind, seq, ts) VALUES ($1, $2, clock_timestamp())",
		job.Args.Series, job.Args.Seq)
	return err
}

// selectArgs is a throughput job: SELECT 1.
type selectArgs struct{}

func (selectArgs) Kind() string { return "bench_select" }

type selectWorker struct {
	river.WorkerDefaults[selectArgs]
	pool *pgxpool.Pool
}

func (w *selectWorker) Work(ctx context.Context, _ *river.Job[selectArgs]) error {
	_, err := w.pool.Exec(ctx, "SELECT 1")
	return err
}

// prepare migrates River's schema up and makes the latency table, empty
// and with no job of this program left from an earlier run, on a
// connection of its own.
func prepare(ctx context.Context, dsn string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return err
	}
	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("rivermigrate: %w", err)
	}
	progress("River's schema: %d migrations applied", len(res.Versions))
	_, err = pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS bench;
		CREATE TABLE IF NOT EXISTS bench.lat (kind text, seq int, ts timestamptz, PRIMARY KEY (kind, seq));
		TRUNCATE bench.lat;
		DELETE FROM river_job WHERE kind IN ('`+latencyArgs{}.Kind()+`', '`+selectArgs{}.Kind()+`')`)
	return err
}

// side is one mode's running River: its pool, its client, and a
// connection of its own for watching and reading results (never the
// pool's, so that watching takes nothing from River).
type side struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	watch  *pgx.Conn
	name   string
	gap    time.Duration
}

// startSide opens the pool with all its connections made (a connection
// costs a fork on this server: not a cost River pays per job), starts a
// client of the mode and waits until it runs.
func startSide(ctx context.Context, o options, name string) (*side, error) {
	pcfg, err := pgxpool.ParseConfig(o.dsn)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = int32(o.poolSize)
	// Names this mode's backends for idleCPU (the previous mode's may
	// still be ending).
	pcfg.ConnConfig.RuntimeParams["application_name"] = appName(name)
	s := &side{name: name, gap: o.gap}
	if s.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, err
	}
	if err := fillPool(ctx, s.pool, o.poolSize); err != nil {
		s.close()
		return nil, err
	}
	if s.watch, err = pgx.Connect(ctx, o.dsn); err != nil {
		s.close()
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &latencyWorker{pool: s.pool})
	river.AddWorker(workers, &selectWorker{pool: s.pool})
	if s.client, err = river.NewClient(riverpgxv5.New(s.pool), riverConfig(name, o.workers, workers)); err != nil {
		s.close()
		return nil, err
	}
	if err := s.client.Start(ctx); err != nil {
		s.client = nil
		s.close()
		return nil, err
	}
	return s, nil
}

func appName(mode string) string { return "river-bench " + mode }

// fillPool opens n connections of pool at once and gives them back.
func fillPool(ctx context.Context, pool *pgxpool.Pool, n int) error {
	var held []*pgxpool.Conn
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		held = append(held, c)
	}
	return nil
}

// close stops the client (it finishes its jobs and completes them) and
// closes the connections; also after an interrupt, so not with its
// context: the client must be stopped before its pool closes.
func (s *side) close() {
	if s.client != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.client.Stop(stopCtx); err != nil {
			progress("warning: stopping River's client: %v", err)
		}
		cancel()
	}
	if s.watch != nil {
		_ = s.watch.Close(context.Background())
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

// warnLogger makes River log warnings and errors to stderr only.
func warnLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
