package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// /proc readers for the idle CPU and memory rows.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture the extension builds on.
const clockTicks = 100

// cpuTicks returns utime + stime of pid, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm, field 2, is in parentheses and may hold spaces: the fields
	// after the last ')' start with field 3 (state).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, s)
	}
	// utime and stime are fields 14 and 15, i.e. f[11] and f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, s)
	}
	return ut + st, nil
}

// memKB holds /proc/<pid>/status sizes in kB.
type memKB struct {
	rss, anon, shmem int64
}

func memOf(pid int) (memKB, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memKB{}, err
	}
	var m memKB
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.rss
		case "RssAnon":
			dst = &m.anon
		case "RssShmem":
			dst = &m.shmem
		default:
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("/proc/%d/status: unexpected %q", pid, line)
		}
		if *dst, err = strconv.ParseInt(f[0], 10, 64); err != nil {
			return m, err
		}
		found++
	}
	if found != 3 {
		return m, fmt.Errorf("/proc/%d/status: VmRSS, RssAnon or RssShmem missing", pid)
	}
	return m, nil
}
