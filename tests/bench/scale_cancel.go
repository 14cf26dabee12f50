package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Section S4: cancel_all_async_tasks() of one role's pending tasks
// (waiting for later, as S1 (b) left them; submitted here if S1 did not
// run): the time, the memory of the backend that cancels (a fresh
// connection, so its VmHWM is the cancel's own peak; RssAnon sampled
// meanwhile), and which of our processes it makes busy (pg_stat_activity
// sampled meanwhile; the launcher's CPU). Three runs: 1/100 of the size by
// another role while the large one is pending, the large one, then the
// small again with nothing else pending (the ratios' base).

const (
	scaleCancelSample    = 20 * time.Millisecond
	scaleCancelSmallRole = "bench_cancel_small"
)

// cancelFigures is one cancel's result.
type cancelFigures struct {
	label           string
	n               int
	secs            float64
	before, after   map[string]int64
	anonPeak, ticks int64
	seen            []string
}

func (b *bench) scaleCancel(sc scaleConfig) error {
	small := max(1, sc.pending/100)
	runs := []struct {
		role, label string
		n           int
	}{
		{scaleCancelSmallRole, fmt.Sprintf("%d pending, %d of another role pending too", small, sc.pending), small},
		{scaleBusyRole, fmt.Sprintf("%d pending", sc.pending), sc.pending},
		{scaleCancelSmallRole, fmt.Sprintf("%d pending, nothing else", small), small},
	}
	if scaleLeft.first == 0 { // S1 did not run: the large run's tasks, pending during the first
		first, last, err := b.scaleCancelSubmit(scaleBusyRole, sc.pending)
		if err != nil {
			return err
		}
		scaleLeft.first, scaleLeft.last = first, last
	}
	var out []cancelFigures
	for _, r := range runs {
		first, last := scaleLeft.first, scaleLeft.last
		if r.role != scaleBusyRole {
			var err error
			if first, last, err = b.scaleCancelSubmit(r.role, r.n); err != nil {
				return err
			}
		}
		if r.role == scaleBusyRole {
			scaleLeft.first, scaleLeft.last = 0, 0
		}
		f, err := b.scaleCancelOnce(r.role, r.n, first, last)
		if err != nil {
			return err
		}
		f.label = r.label
		out = append(out, f)
	}
	b.tbl.section("S4", "cancel_all_async_tasks() of pending tasks",
		fmt.Sprintf("one role's SELECT 1 tasks pending for later (run_after as S1 (b)), canceled by the role in a fresh session: the call's time (ratio per task to the last run), the backend's VmHWM, VmRSS and RssAnon (/proc/<pid>/status) before → after (RssAnon's peak sampled every %v), the launcher's CPU from the call until %v after it, and the lantern_async processes seen meanwhile",
			scaleCancelSample, time.Second))
	base := out[len(out)-1].secs / float64(out[len(out)-1].n)
	for _, f := range out {
		b.scaleCancelRows(f, base)
	}
	return nil
}

// scaleCancelSubmit queues n tasks for later as role and waits until
// nothing of ours is connected.
func (b *bench) scaleCancelSubmit(role string, n int) (first, last int64, err error) {
	conn, err := b.scaleRole(role)
	if err != nil {
		return 0, 0, err
	}
	first, last, _, err = b.scaleSubmitBusy(conn, n, true)
	conn.Close(context.Background())
	if err != nil {
		return 0, 0, err
	}
	return first, last, b.waitQuietFor(50*time.Millisecond, waitingQuietFor)
}

func (b *bench) scaleCancelRows(f cancelFigures, base float64) {
	b.tbl.add(f.label+": cancel_all_async_tasks()", fmt.Sprintf("%.0f ms; %s", f.secs*1000, withRatio(f.secs*1e6/float64(f.n), base*1e6, "%.2f µs per task")), "", f.n, "")
	b.tbl.add("  backend VmHWM, VmRSS", beforeAfter(f.before["VmHWM"], f.after["VmHWM"])+"; "+beforeAfter(f.before["VmRSS"], f.after["VmRSS"]), "kB", 2, "")
	b.tbl.add("  backend RssAnon (private), peak", beforeAfter(f.before["RssAnon"], f.after["RssAnon"])+fmt.Sprintf(", peak %d", f.anonPeak), "kB", 0, "")
	b.tbl.add("  launcher CPU meanwhile", fmt.Sprint(f.ticks), "ticks of 10 ms", 0, "")
	b.tbl.add("  lantern_async processes seen", fmt.Sprintf("%d %s", len(f.seen), strings.Join(f.seen, ", ")), "", 0, "")
}

// scaleCancelOnce cancels the n pending tasks first..last as role.
func (b *bench) scaleCancelOnce(role string, n int, first, last int64) (cancelFigures, error) {
	f := cancelFigures{n: n}
	conn, err := b.c.Connect(b.ctx, dbName, role)
	if err != nil {
		return f, err
	}
	defer conn.Close(context.Background())
	var pid int
	if err := conn.QueryRow(b.ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return f, err
	}
	if f.before, err = statusKB(pid, "VmHWM", "VmRSS", "RssAnon"); err != nil {
		return f, err
	}
	launcher, err := b.pidsOf(backendLauncher)
	if err != nil || len(launcher) != 1 {
		return f, fmt.Errorf("want one launcher: %v %v", launcher, err)
	}
	ticks0, err := cpuTicks(launcher[0])
	if err != nil {
		return f, err
	}
	done := make(chan error, 1)
	go func() {
		t0 := time.Now()
		_, err := conn.Exec(b.ctx, "SELECT lantern.cancel_all_async_tasks()")
		f.secs = time.Since(t0).Seconds()
		if err == nil {
			f.after, err = statusKB(pid, "VmHWM", "VmRSS", "RssAnon")
		}
		done <- err
	}()
	peak := func() {
		if m, err := statusKB(pid, "RssAnon"); err == nil {
			f.anonPeak = max(f.anonPeak, m["RssAnon"])
		}
	}
	if f.seen, err = b.sampleProcsUntil(done, peak); err != nil {
		return f, err
	}
	ticks1, err := cpuTicks(launcher[0])
	if err != nil {
		return f, err
	}
	f.ticks = ticks1 - ticks0
	f.anonPeak = max(f.anonPeak, f.after["RssAnon"])
	progress("   cancel of %d: %.2f s, VmHWM %d → %d kB, RssAnon peak %d kB", n, f.secs, f.before["VmHWM"], f.after["VmHWM"], f.anonPeak)
	return f, b.checkCanceled(first, last)
}

// sampleProcsUntil lists the lantern_async processes (other than the
// launcher) seen from now until done's value and a second after it.
// each also runs at each sample.
func (b *bench) sampleProcsUntil(done chan error, each func()) ([]string, error) {
	var seen []string
	known := map[string]bool{}
	var end time.Time
	for end.IsZero() || time.Now().Before(end) {
		select {
		case err := <-done:
			if err != nil {
				return nil, err
			}
			end = time.Now().Add(time.Second)
		case <-time.After(scaleCancelSample):
		}
		each()
		procs, err := b.extProcNames()
		if err != nil {
			return nil, err
		}
		for _, p := range procs {
			if !known[p] {
				known[p] = true
				seen = append(seen, p)
			}
		}
	}
	return seen, nil
}

func (b *bench) checkCanceled(first, last int64) error {
	var n int64
	if err := b.su.QueryRow(b.ctx, `SELECT count(*) FROM lantern.tasks
		WHERE jobid BETWEEN $1 AND $2 AND status <> 'canceled'`, first, last).Scan(&n); err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("%d of the tasks %d..%d are not canceled", n, first, last)
	}
	return nil
}

// statusKB reads the named kB fields of /proc/<pid>/status.
func statusKB(pid int, names ...string) (map[string]int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(raw), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, want := range names {
			if name == want {
				f := strings.Fields(rest)
				if len(f) != 2 || f[1] != "kB" {
					return nil, fmt.Errorf("/proc/%d/status: unexpected %q", pid, line)
				}
				if m[name], err = strconv.ParseInt(f[0], 10, 64); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(m) != len(names) {
		return nil, fmt.Errorf("/proc/%d/status: want %v, found %v", pid, names, m)
	}
	return m, nil
}
