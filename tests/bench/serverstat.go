package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Counters rows 15 and 15b take before and after a run: the machine's CPU
// (/proc/stat), the server's processes' CPU (/proc/<pid>/stat, by
// pg_stat_activity's backend_type) and the WAL's writes and flushes
// (pg_stat_wal).

// machineCPU holds /proc/stat's first line in clock ticks, summed over
// every CPU.
type machineCPU struct{ busy, total int64 }

func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("/proc/stat: unexpected %q", line)
	}
	var m machineCPU
	// user nice system idle iowait irq softirq steal: idle and iowait
	// are the CPUs doing nothing.
	for i, s := range f[1:9] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat: unexpected %q", line)
		}
		m.total += n
		if i != 3 && i != 4 {
			m.busy += n
		}
	}
	return m, nil
}

// serverCPU is the CPU the server's processes have used, in clock ticks:
// each live child of the postmaster by pid with its backend_type, and
// the postmaster with every child it has reaped (cutime + cstime, from
// Cluster.ServerCPU). A child alive at the first look and reaped by the
// second moves from byPid into reaped, whole: the difference stays exact.
type serverCPU struct {
	at     time.Time
	byPid  map[int]int64
	kind   map[int]string
	reaped int64
}

// snapServerCPU reads the server's CPU. Processes outside
// pg_stat_activity (the logger, backends on their way out) have kind "".
// A child reaped between reading reaped and scanning /proc would count
// nowhere: the scan is taken again until reaped is the same after it.
func (b *bench) snapServerCPU() (serverCPU, error) {
	var pm int
	if err := b.su.QueryRow(b.ctx, "SELECT pg_backend_pid()").Scan(&pm); err != nil {
		return serverCPU{}, err
	}
	pm, err := parentOf(pm)
	if err != nil {
		return serverCPU{}, err
	}
	kinds, err := b.kindsByPid()
	if err != nil {
		return serverCPU{}, err
	}
	reaped := func() int64 { return int64(b.c.ServerCPU() / (time.Second / clockTicks)) }
	for try := 0; ; try++ {
		s := serverCPU{at: time.Now(), reaped: reaped(), kind: map[int]string{}}
		if s.byPid, err = childTicks(pm); err != nil {
			return s, err
		}
		if reaped() == s.reaped || try == 20 {
			for pid := range s.byPid {
				s.kind[pid] = kinds[pid]
			}
			return s, nil
		}
	}
}

func (b *bench) kindsByPid() (map[int]string, error) {
	rows, err := b.su.Query(b.ctx, "SELECT pid, coalesce(backend_type, '') FROM pg_stat_activity")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	kinds := map[int]string{}
	for rows.Next() {
		var pid int
		var k string
		if err := rows.Scan(&pid, &k); err != nil {
			return nil, err
		}
		kinds[pid] = k
	}
	return kinds, rows.Err()
}

// childTicks returns the CPU ticks of each live child of pm.
func childTicks(pm int) (map[int]int64, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	ticks := map[int]int64{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == pm {
			continue
		}
		if p, err := parentOf(pid); err != nil || p != pm {
			continue // not the server's, or gone meanwhile
		}
		if t, err := cpuTicks(pid); err == nil {
			ticks[pid] = t
		}
	}
	return ticks, nil
}

// parentOf reads the ppid of pid from /proc/<pid>/stat.
func parentOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// After comm's ')': state, then ppid.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || len(strings.Fields(s[i+1:])) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, s)
	}
	return strconv.Atoi(strings.Fields(s[i+1:])[1])
}

// cpuUse is what a serverCPU difference splits into, in seconds: by
// backend_type ("" outside pg_stat_activity), and exited (reaped in
// between, whatever their kind).
type cpuUse struct {
	total, exited float64
	byKind        map[string]float64
}

// since returns the server's CPU from before to s. A process that started
// in between counts from zero.
func (s serverCPU) since(before serverCPU) cpuUse {
	u := cpuUse{byKind: map[string]float64{}}
	sec := func(t int64) float64 { return float64(t) / clockTicks }
	for pid, t := range s.byPid {
		d := sec(t - before.byPid[pid])
		u.total += d
		u.byKind[s.kind[pid]] += d
	}
	// A process alive before and gone now: its ticks counted before are
	// in reaped now, whole.
	var gone int64
	for pid, t := range before.byPid {
		if _, ok := s.byPid[pid]; !ok {
			gone += t
		}
	}
	u.exited = sec(s.reaped - before.reaped - gone)
	u.total += u.exited
	return u
}

// perSecond lists the kinds that used at least 1 % of a core over secs,
// the most first, in cores, after the total.
func (u cpuUse) perSecond(secs float64) string { return u.scaled(1/secs, "%.2f", 0.01) }

// scaled lists the kinds whose seconds times f make at least least, the
// most first, each formatted with format, after the total. Processes
// outside pg_stat_activity are mostly backends on their way out.
func (u cpuUse) scaled(f float64, format string, least float64) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range u.byKind {
		if k == "" {
			k = "exiting"
		}
		l = append(l, kv{strings.TrimPrefix(k, "lantern_async "), v * f})
	}
	l = append(l, kv{"exited", u.exited * f})
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
	var parts []string
	for _, e := range l {
		if e.v >= least {
			parts = append(parts, e.k+" "+fmt.Sprintf(format, e.v))
		}
	}
	return fmt.Sprintf(format, u.total*f) + ": " + strings.Join(parts, ", ")
}

// walStat holds pg_stat_wal's counters. The server's processes add theirs
// to it when they exit or every so often (a lantern_async worker: when it
// exits), so a difference is exact only once the run's workers are gone.
type walStat struct {
	writes, syncs int64
	syncMS        float64 // track_wal_io_timing = on, else 0
}

func (b *bench) snapWAL() (walStat, error) {
	var w walStat
	var version int
	if err := b.su.QueryRow(b.ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return w, err
	}
	q := "SELECT wal_write, wal_sync, wal_sync_time FROM pg_stat_wal"
	if version >= 180000 {
		// 18 moved the WAL I/O counts from pg_stat_wal to pg_stat_io.
		q = `SELECT sum(writes)::bigint, sum(fsyncs)::bigint, coalesce(sum(fsync_time), 0)
			FROM pg_stat_io WHERE object = 'wal'`
	}
	err := b.su.QueryRow(b.ctx, q).Scan(&w.writes, &w.syncs, &w.syncMS)
	return w, err
}

func (w walStat) since(before walStat) walStat {
	return walStat{w.writes - before.writes, w.syncs - before.syncs, w.syncMS - before.syncMS}
}

func nCPU() int { return runtime.NumCPU() }
