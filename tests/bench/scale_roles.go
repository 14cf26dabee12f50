package main

import (
	"context"
	"fmt"
	"time"
)

// Section S2: many login roles, each with one pending task, all submitted
// in one transaction by the superuser (SET ROLE before each async_task in
// a DO block: each task is its role's, which is checked). For each size:
// the time from the submit's commit until the last task's end, the
// launcher's CPU meanwhile (it exposes no count of its rounds: per task),
// and the spread of the tasks' starts (the clock_timestamp() each task
// inserts − the submit's commit). Sizes grow: the roles of a smaller size
// are reused and more are created.

const (
	scaleRolePrefix = "scale_r"
	scaleRoleGroup  = "scale_roles"
	scaleRolesTable = "bench.scale_starts"
)

func (b *bench) scaleRoles(sc scaleConfig) error {
	for _, q := range []string{
		"CREATE ROLE " + scaleRoleGroup + " NOLOGIN",
		"GRANT USAGE ON SCHEMA lantern TO " + scaleRoleGroup,
		"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lantern TO " + scaleRoleGroup,
		"CREATE TABLE " + scaleRolesTable + " (size int, role text, ts timestamptz)",
		"GRANT USAGE ON SCHEMA bench TO " + scaleRoleGroup,
		"GRANT INSERT ON " + scaleRolesTable + " TO " + scaleRoleGroup,
	} {
		if _, err := b.su.Exec(b.ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	b.tbl.section("S2", "many roles, one pending task each",
		fmt.Sprintf("N login roles (%s1..N), one INSERT ... clock_timestamp() task each, submitted in one transaction by the superuser (SET ROLE per task in a DO block; each task's username checked); max_workers = 4, worker_idle_timeout = 1s; all run = submit commit → the latest commit timestamp of the task rows; starts = each task's clock_timestamp() − the submit commit; launcher CPU = its utime+stime from before the submit until all ran (the launcher exposes no count of rounds: per task)", scaleRolePrefix))
	if err := b.scaleLauncherMem("0 extra roles"); err != nil {
		return err
	}
	var base scaleRoleFigures
	made := 0
	for _, n := range sc.roles {
		t0 := time.Now()
		if _, err := b.su.Exec(b.ctx, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP
			EXECUTE format('CREATE ROLE %s%%s LOGIN IN ROLE %s', i); END LOOP; END $$`,
			made+1, n, scaleRolePrefix, scaleRoleGroup)); err != nil {
			return err
		}
		progress("   roles %d..%d created in %.1f s", made+1, n, time.Since(t0).Seconds())
		made = n
		f, err := b.scaleRolesOnce(n)
		if err != nil {
			return fmt.Errorf("%d roles: %w", n, err)
		}
		if base.n == 0 {
			base = f
		}
		b.scaleRoleRows(f, base)
		if err := b.scaleLauncherMem(fmt.Sprintf("after %d roles' tasks", n)); err != nil {
			return err
		}
	}
	return nil
}

type scaleRoleFigures struct {
	n                     int
	allSecs, launcherSecs float64
	start                 []float64 // ms
	mostWorkers           int
}

// scaleRolesOnce submits one task for each of roles 1..n and waits for
// all of them.
func (b *bench) scaleRolesOnce(n int) (scaleRoleFigures, error) {
	f := scaleRoleFigures{n: n}
	if err := b.waitQuiet(20 * time.Millisecond); err != nil {
		return f, err
	}
	launcher, err := b.pidsOf(backendLauncher)
	if err != nil || len(launcher) != 1 {
		return f, fmt.Errorf("want one launcher: %v %v", launcher, err)
	}
	var after int64
	if err := b.su.QueryRow(b.ctx, "SELECT coalesce(max(jobid), 0) FROM lantern.tasks").Scan(&after); err != nil {
		return f, err
	}
	ticks0, err := cpuTicks(launcher[0])
	if err != nil {
		return f, err
	}
	xid, err := b.scaleRolesSubmit(n)
	if err != nil {
		return f, err
	}
	err = poll(b.ctx, 200*time.Millisecond, time.Duration(n)*300*time.Millisecond+5*time.Minute, fmt.Sprintf("%d roles' tasks", n), func() (bool, error) {
		pids, err := b.pidsOf(backendWorker)
		f.mostWorkers = max(f.mostWorkers, len(pids))
		if err != nil {
			return false, err
		}
		var open bool
		err = b.su.QueryRow(b.ctx, `SELECT EXISTS (SELECT FROM lantern.tasks
			WHERE jobid > $1 AND status IN ('pending', 'running'))`, after).Scan(&open)
		return !open, err
	})
	if err != nil {
		return f, err
	}
	ticks1, err := cpuTicks(launcher[0])
	if err != nil {
		return f, err
	}
	f.launcherSecs = float64(ticks1-ticks0) / clockTicks
	return f, b.scaleRolesResults(&f, after, xid)
}

// scaleRolesSubmit queues one task for each of roles 1..n in one
// transaction and returns its xid.
func (b *bench) scaleRolesSubmit(n int) (xid int64, err error) {
	tx, err := b.su.Begin(b.ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	t0 := time.Now()
	// RESET ROLE after each task: the next SET ROLE is the superuser's.
	if _, err := tx.Exec(b.ctx, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
		EXECUTE format('SET ROLE %s%%s', i);
		PERFORM lantern.async_task(format('INSERT INTO %s VALUES (%d, current_user, clock_timestamp())'));
		RESET ROLE;
		END LOOP; END $$`, n, scaleRolePrefix, scaleRolesTable, n)); err != nil {
		return 0, err
	}
	if err := tx.QueryRow(b.ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		return 0, err
	}
	progress("   %d tasks of %d roles submitted in %.1f s", n, n, time.Since(t0).Seconds())
	return xid, tx.Commit(b.ctx)
}

// scaleRolesResults checks that each task was its own role's and
// succeeded, and reads the timings.
func (b *bench) scaleRolesResults(f *scaleRoleFigures, after, xid int64) error {
	var total, distinct, bad int
	if err := b.su.QueryRow(b.ctx, `SELECT count(*), count(DISTINCT username),
		count(*) FILTER (WHERE status <> 'succeeded' OR username NOT LIKE $2 || '%')
		FROM lantern.tasks WHERE jobid > $1`, after, scaleRolePrefix).Scan(&total, &distinct, &bad); err != nil {
		return err
	}
	if total != f.n || distinct != f.n || bad != 0 {
		return fmt.Errorf("%d tasks of %d roles, %d not succeeded or not a %s role; want %d of %d", total, distinct, bad, scaleRolePrefix, f.n, f.n)
	}
	if err := b.su.QueryRow(b.ctx, `SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - pg_xact_commit_timestamp(`+xidExpr(2)+`))
		FROM lantern.tasks WHERE jobid > $1`, after, xid).Scan(&f.allSecs); err != nil {
		return err
	}
	// Each row's role is the current_user its task ran as: it must be
	// the task's username.
	rows, err := b.su.Query(b.ctx, `SELECT extract(epoch FROM s.ts - pg_xact_commit_timestamp(`+xidExpr(2)+`)) * 1000
		FROM `+scaleRolesTable+` s WHERE s.size = $1
		AND EXISTS (SELECT FROM lantern.tasks t WHERE t.jobid > $3 AND t.username = s.role)`, f.n, xid, after)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v float64
		if err := rows.Scan(&v); err != nil {
			return err
		}
		f.start = append(f.start, v)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(f.start) != f.n {
		return fmt.Errorf("%d starts recorded by their tasks' roles, want %d", len(f.start), f.n)
	}
	return nil
}

func (b *bench) scaleRoleRows(f, base scaleRoleFigures) {
	per := func(v float64, n int) float64 { return v * 1000 / float64(n) }
	label := fmt.Sprintf("%d roles", f.n)
	b.tbl.add(label+": all run, per task", fmt.Sprintf("%.2f s; %s", f.allSecs, withRatio(per(f.allSecs, f.n), per(base.allSecs, base.n), "%.2f ms")), "", f.n, "")
	b.tbl.add("  launcher CPU, per task", fmt.Sprintf("%.2f s (%.1f %% of a core); %s", f.launcherSecs, f.launcherSecs/f.allSecs*100,
		withRatio(per(f.launcherSecs, f.n)*1000, per(base.launcherSecs, base.n)*1000, "%.0f µs")), "", f.n, "")
	b.tbl.add("  start − submit commit: min / p50 / p99 / max", fmt.Sprintf("%s / %s / %s / %s",
		ms(percentile(f.start, 0)), ms(percentile(f.start, 50)), ms(percentile(f.start, 99)), ms(percentile(f.start, 100))), "ms", f.n, "")
	b.tbl.add("  most workers seen at once", fmt.Sprint(f.mostWorkers), "processes", 0, "")
}
