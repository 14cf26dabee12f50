package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Section S4: cancel_all_async_tasks() of scaleBusyRole's pending tasks
// (waiting for later, as S1 (b) left them; submitted here if S1 did not
// run), first at 1/100 of the size (another role's) for the ratio: the time, and the
// memory of the backend that cancels (a fresh connection, so its VmHWM is
// the cancel's own peak), and which of our processes it makes busy
// (pg_stat_activity sampled meanwhile; the launcher's CPU).

const (
	scaleCancelSample    = 20 * time.Millisecond
	scaleCancelSmallRole = "bench_cancel_small"
)

func (b *bench) scaleCancel(sc scaleConfig) error {
	small := max(1, sc.pending/100)
	b.tbl.section("S4", "cancel_all_async_tasks() of pending tasks",
		fmt.Sprintf("one role's SELECT 1 tasks pending for later (run_after as S1 (b)), canceled by the role in a fresh session: the call's time, the backend's VmHWM and VmRSS (/proc/<pid>/status) before → after, the launcher's CPU from the call until %v after it, and the lantern_async processes seen (sampled every %v)",
			time.Second, scaleCancelSample))
	sizes := []int{sc.pending}
	if small < sc.pending {
		sizes = []int{small, sc.pending}
	}
	var base float64
	for _, n := range sizes {
		// The smaller size's role is another: cancel_all_async_tasks()
		// would cancel S1's pending tasks too.
		role := scaleBusyRole
		if n != sc.pending {
			role = scaleCancelSmallRole
		}
		first, last := scaleLeft.first, scaleLeft.last
		if n != sc.pending || first == 0 {
			busy, err := b.scaleRole(role)
			if err != nil {
				return err
			}
			first, last, _, err = b.scaleSubmitBusy(busy, n, true)
			busy.Close(context.Background())
			if err != nil {
				return err
			}
			if err := b.waitQuietFor(50*time.Millisecond, waitingQuietFor); err != nil {
				return err
			}
		}
		perTask, err := b.scaleCancelOnce(role, n, first, last, base)
		if err != nil {
			return err
		}
		if base == 0 {
			base = perTask
		}
		if n == sc.pending {
			scaleLeft.first, scaleLeft.last = 0, 0
		}
	}
	return nil
}

// scaleCancelOnce cancels the n pending tasks first..last and adds its
// rows; it returns the time per task in µs.
func (b *bench) scaleCancelOnce(role string, n int, first, last int64, base float64) (float64, error) {
	conn, err := b.c.Connect(b.ctx, dbName, role)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var pid int
	if err := conn.QueryRow(b.ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return 0, err
	}
	before, err := statusKB(pid, "VmHWM", "VmRSS")
	if err != nil {
		return 0, err
	}
	launcher, err := b.pidsOf(backendLauncher)
	if err != nil || len(launcher) != 1 {
		return 0, fmt.Errorf("want one launcher: %v %v", launcher, err)
	}
	ticks0, err := cpuTicks(launcher[0])
	if err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	var secs float64
	var after map[string]int64
	go func() {
		t0 := time.Now()
		_, err := conn.Exec(b.ctx, "SELECT lantern.cancel_all_async_tasks()")
		secs = time.Since(t0).Seconds()
		if err == nil {
			after, err = statusKB(pid, "VmHWM", "VmRSS")
		}
		done <- err
	}()
	seen, err := b.sampleProcsUntil(done)
	if err != nil {
		return 0, err
	}
	ticks1, err := cpuTicks(launcher[0])
	if err != nil {
		return 0, err
	}
	if err := b.checkCanceled(first, last); err != nil {
		return 0, err
	}
	perTask := secs * 1e6 / float64(n)
	if base == 0 {
		base = perTask
	}
	progress("   cancel of %d: %.2f s, VmHWM %d → %d kB", n, secs, before["VmHWM"], after["VmHWM"])
	b.tbl.add(fmt.Sprintf("%d pending: cancel_all_async_tasks()", n), fmt.Sprintf("%.0f ms; %s", secs*1000, withRatio(perTask, base, "%.2f µs per task")), "", n, "")
	b.tbl.add("  backend VmHWM", beforeAfter(before["VmHWM"], after["VmHWM"]), "kB", 2, "")
	b.tbl.add("  backend VmRSS", beforeAfter(before["VmRSS"], after["VmRSS"]), "kB", 2, "")
	b.tbl.add("  launcher CPU meanwhile", fmt.Sprint(ticks1-ticks0), "ticks of 10 ms", 0, "")
	b.tbl.add("  lantern_async processes seen", fmt.Sprintf("%d %s", len(seen), strings.Join(seen, ", ")), "", 0, "")
	return perTask, nil
}

// sampleProcsUntil lists the lantern_async processes (other than the
// launcher) seen from now until done's value and a second after it.
func (b *bench) sampleProcsUntil(done chan error) ([]string, error) {
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
