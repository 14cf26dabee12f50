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

// What a running River client costs while it has nothing to do: its own
// process and its connections' backends (its fetches poll the server
// every FetchPollInterval), utime + stime from /proc, so the program must
// run on the server's machine.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times.
const clockTicks = 100

// idleCPU returns the CPU River's side used over d, in % of one core.
func (s *side) idleCPU(ctx context.Context, d time.Duration) (float64, error) {
	rows, err := s.watch.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, appName(s.name))
	if err != nil {
		return 0, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return 0, err
	}
	if len(pids) == 0 {
		return 0, fmt.Errorf("idle CPU: no backend named %q", appName(s.name))
	}
	pids = append(pids, os.Getpid())
	before, err := sumTicks(pids)
	if err != nil {
		return 0, fmt.Errorf("idle CPU needs the server on this machine (-idle 0 to skip): %w", err)
	}
	if err := sleep(ctx, d); err != nil {
		return 0, err
	}
	after, err := sumTicks(pids)
	if err != nil {
		return 0, fmt.Errorf("idle CPU: a process of River's side ended: %w", err)
	}
	return float64(after-before) / clockTicks / d.Seconds() * 100, nil
}

func sumTicks(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// cpuTicks returns utime + stime of pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm, field 2, may hold spaces: the fields after the last ')' start
	// with field 3; utime and stime are fields 14 and 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, s)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, s)
	}
	return ut + st, nil
}
