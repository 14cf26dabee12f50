package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Row 9's CPU figures: on a machine shared with other work, a process's
// own CPU time (/proc/<pid>/schedstat, in ns) moves less with the load
// than the wall-clock costs do.

// cpuNanos returns the time pid has run on a CPU, in ns.
func cpuNanos(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, fmt.Errorf("/proc/%d/schedstat: unexpected %q", pid, b)
	}
	return strconv.ParseInt(f[0], 10, 64)
}

// workerCPU samples, every 10 ms until stopped, the CPU time of each
// lantern_async worker that the postmaster forks from its start on, and
// returns their sum (each worker's last sample: a worker idle before it
// exits adds nothing).
type workerCPU struct {
	postmaster int
	mu         sync.Mutex
	before     map[int]bool // workers there at the start (one exiting), left out
	seen       map[int]int64
	stop       context.CancelFunc
	done       chan struct{}
}

func (b *bench) sampleWorkerCPU() (*workerCPU, error) {
	var backend int
	if err := b.su.QueryRow(b.ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return nil, err
	}
	pm, err := parentOf(backend)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(b.ctx)
	w := &workerCPU{postmaster: pm, before: map[int]bool{}, seen: map[int]int64{}, stop: stop, done: make(chan struct{})}
	w.sample()
	for pid := range w.seen {
		w.before[pid] = true
	}
	w.seen = map[int]int64{}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			w.sample()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return w, nil
}

func (w *workerCPU) sample() {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := parentOf(pid); err != nil || ppid != w.postmaster || w.before[pid] {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmd), backendWorker) {
			continue
		}
		if ns, err := cpuNanos(pid); err == nil {
			w.mu.Lock()
			w.seen[pid] = ns
			w.mu.Unlock()
		}
	}
}

// total stops the sampling and returns the workers' CPU time and how many
// workers there were.
func (w *workerCPU) total() (time.Duration, int) {
	w.stop()
	<-w.done
	var sum int64
	for _, ns := range w.seen {
		sum += ns
	}
	return time.Duration(sum), len(w.seen)
}
