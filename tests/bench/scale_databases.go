package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Section S3: many databases with the extension, copied as
// tests/scale does (CREATE DATABASE ... TEMPLATE of a database that has
// it, STRATEGY FILE_COPY, scaleCopiers sessions at once). For each size:
// the copies' time per database, the launcher's idle CPU over idleWindow
// once nothing of ours has been connected for waitingQuietFor (row 11's
// window: the lantern_async processes seen meanwhile too), and the cold
// start of a task (row 2's measure) in scaleColdSamples databases spread
// over the copies. Sizes grow: the copies of a smaller size are reused.

const (
	scaleTemplate    = "scale_tpl"
	scaleDBPrefix    = "scale_d"
	scaleCopiers     = 2
	scaleColdSamples = 5
	// scaleDiskMargin is the free space a size must leave on the
	// cluster's disk, or it is skipped (the machine is shared).
	scaleDiskMargin = 10 << 30
)

func (b *bench) scaleDatabases(sc scaleConfig) error {
	dbBytes, err := b.scaleMakeTemplate()
	if err != nil {
		return err
	}
	b.tbl.section("S3", "many databases with the extension",
		fmt.Sprintf("N copies of a database with the extension (CREATE DATABASE ... TEMPLATE, STRATEGY FILE_COPY, %d sessions at once, fsync as the run: %d kB each); idle: once nothing of ours had been connected for %v, the launcher's utime+stime over %.0f s and the lantern_async processes seen (every %v); cold start: row 2's start − submit commit of one INSERT task in each of %d databases spread over the copies, nothing of ours connected before each",
			scaleCopiers, dbBytes>>10, waitingQuietFor, idleWindow.Seconds(), waitingSample, scaleColdSamples))
	if err := b.scaleLauncherMem("before S3's copies"); err != nil {
		return err
	}
	var dataDir string
	if err := b.su.QueryRow(b.ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
		return err
	}
	var baseCopy, baseCold float64
	made := 0
	for _, n := range sc.databases {
		if need, free := int64(n-made)*dbBytes, freeBytes(dataDir); free-need < scaleDiskMargin {
			b.tbl.add(fmt.Sprintf("%d databases", n), fmt.Sprintf("skipped: %d more copies need %.1f GB, %.1f GB free (margin %d GB)",
				n-made, float64(need)/(1<<30), float64(free)/(1<<30), scaleDiskMargin>>30), "", 0, "")
			break
		}
		t0 := time.Now()
		if err := b.scaleCopy(made+1, n); err != nil {
			return err
		}
		copyMs := time.Since(t0).Seconds() * 1000 / float64(n-made)
		progress("   %d databases: copies %d..%d took %.1f s", n, made+1, n, time.Since(t0).Seconds())
		made = n
		if baseCopy == 0 {
			baseCopy = copyMs
		}
		// Each copy notes a scout for it (a copy may hold tasks).
		if err := b.waitQuietLong(); err != nil {
			return err
		}
		if err := b.waitQuietFor(50*time.Millisecond, waitingQuietFor); err != nil {
			return err
		}
		idle, err := b.waitingIdleWindow()
		if err != nil {
			return err
		}
		cold, err := b.scaleColdStarts(n)
		if err != nil {
			return err
		}
		if baseCold == 0 {
			baseCold = percentile(cold, 50)
		}
		b.scaleDatabaseRows(n, withRatio(copyMs, baseCopy, "%.0f"), idle, cold, baseCold)
		if err := b.scaleLauncherMem(fmt.Sprintf("%d databases", n)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) scaleDatabaseRows(n int, copyMs string, idle waitingIdle, cold []float64, baseCold float64) {
	b.tbl.add(fmt.Sprintf("%d databases: CREATE DATABASE, per copy", n), copyMs, "ms", n, "")
	b.tbl.add("  idle launcher", fmt.Sprintf("%.2f", idle.launcherPct), "% of a core", fmt.Sprintf("1 × %.0f s", idleWindow.Seconds()), "0.0 %")
	b.tbl.add("  lantern_async processes started while idle", fmt.Sprint(len(idle.started)), "processes", idle.samples, "0")
	b.tbl.add("  cold start − submit commit, p50 / max", fmt.Sprintf("%s / %s", withRatio(percentile(cold, 50), baseCold, "%.1f"), ms(percentile(cold, 100))), "ms", len(cold), "")
}

// scaleMakeTemplate makes the template database (the extension, a table
// benchRole's tasks insert into, its grants) and returns its size.
func (b *bench) scaleMakeTemplate() (int64, error) {
	if _, err := b.su.Exec(b.ctx, "CREATE DATABASE "+scaleTemplate); err != nil {
		return 0, err
	}
	conn, err := b.c.Connect(b.ctx, scaleTemplate, superuser)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		"CREATE EXTENSION lantern_async",
		"GRANT USAGE ON SCHEMA lantern TO " + benchRole,
		"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lantern TO " + benchRole,
		"GRANT SELECT ON lantern.tasks TO " + benchRole,
		"CREATE TABLE public.cold (seq int, ts timestamptz)",
		"GRANT INSERT, SELECT ON public.cold TO " + benchRole,
	} {
		if _, err := conn.Exec(b.ctx, q); err != nil {
			return 0, fmt.Errorf("%s: %w", q, err)
		}
	}
	var size int64
	err = conn.QueryRow(b.ctx, "SELECT pg_database_size(current_database())").Scan(&size)
	return size, err
}

// scaleCopy makes databases from..to, scaleCopiers sessions at once, each
// taking every scaleCopiers-th number.
func (b *bench) scaleCopy(from, to int) error {
	errs := make(chan error, scaleCopiers)
	for s := 0; s < scaleCopiers; s++ {
		conn, err := b.c.Connect(b.ctx, dbName, superuser)
		if err != nil {
			return err
		}
		go func() {
			defer conn.Close(context.Background())
			for i := from + s; i <= to; i += scaleCopiers {
				q := fmt.Sprintf("CREATE DATABASE %s%d TEMPLATE %s STRATEGY FILE_COPY", scaleDBPrefix, i, scaleTemplate)
				if _, err := conn.Exec(b.ctx, q); err != nil {
					errs <- fmt.Errorf("%s: %w", q, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for s := 0; s < scaleCopiers; s++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// waitQuietLong waits (up to 20 minutes: a scout for each copy) until
// nothing of ours is connected.
func (b *bench) waitQuietLong() error {
	t0 := time.Now()
	err := poll(b.ctx, 200*time.Millisecond, 20*time.Minute, "the copies' scouts to end", func() (bool, error) {
		n, err := b.extProcs()
		return n == 0, err
	})
	progress("   quiet after %.1f s", time.Since(t0).Seconds())
	return err
}

// scaleColdStarts submits one task in each of scaleColdSamples databases
// among 1..n, each with nothing of ours connected, and returns the
// start − submit commit of each, in ms.
func (b *bench) scaleColdStarts(n int) ([]float64, error) {
	var out []float64
	for k := 0; k < scaleColdSamples; k++ {
		db := fmt.Sprintf("%s%d", scaleDBPrefix, 1+k*(n-1)/max(1, scaleColdSamples-1))
		if err := b.waitQuiet(5 * time.Millisecond); err != nil {
			return nil, err
		}
		if err := sleep(b.ctx, coldGap); err != nil {
			return nil, err
		}
		conn, err := b.c.Connect(b.ctx, db, benchRole)
		if err != nil {
			return nil, err
		}
		v, err := b.scaleColdOne(conn, n*10+k)
		conn.Close(context.Background())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", db, err)
		}
		progress("   cold start in %s: %.1f ms", db, v)
		out = append(out, v)
	}
	return out, nil
}

// scaleColdOne submits one task on conn, waits for it, and returns its
// start − submit commit in ms.
func (b *bench) scaleColdOne(conn *pgx.Conn, seq int) (float64, error) {
	var job, xid int64
	tx, err := conn.Begin(b.ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	if err := tx.QueryRow(b.ctx, "SELECT lantern.async_task($1), txid_current()",
		fmt.Sprintf("INSERT INTO public.cold VALUES (%d, clock_timestamp())", seq)).Scan(&job, &xid); err != nil {
		return 0, err
	}
	if err := tx.Commit(b.ctx); err != nil {
		return 0, err
	}
	var status string
	err = poll(b.ctx, 5*time.Millisecond, time.Minute, fmt.Sprintf("task %d", job), func() (bool, error) {
		err := conn.QueryRow(b.ctx, "SELECT status FROM lantern.tasks WHERE jobid = $1", job).Scan(&status)
		return status != "pending" && status != "running", err
	})
	if err != nil {
		return 0, err
	}
	if status != "succeeded" {
		return 0, fmt.Errorf("task %d %s", job, status)
	}
	var v float64
	err = conn.QueryRow(b.ctx, `SELECT extract(epoch FROM ts - pg_xact_commit_timestamp(`+xidExpr(2)+`)) * 1000
		FROM public.cold WHERE seq = $1`, seq, xid).Scan(&v)
	return v, err
}

// freeBytes is the space left for an unprivileged user on dir's disk.
func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}
