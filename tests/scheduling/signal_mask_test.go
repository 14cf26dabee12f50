package scheduling

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// serverSignals are the signals PostgreSQL handles in a worker (SIGURG is
// its latch wake-up, read from a signalfd on PostgreSQL 15 and later; SIGUSR1
// carries procsignals, parallel workers' messages and the postmaster's
// bgw_notify_pid notices). The kernel hands a signal sent to the process
// to any thread that does not block it: on a Go thread, Go's handler (SIGURG)
// or PostgreSQL's, run off the main thread, takes it, and the main thread
// wakes only at its next timeout. SIGCHLD is not here: Go keeps it
// unblocked on its threads (a synchronous-style signal it always wants), and
// a worker leaves it at SIG_DFL.
var serverSignals = []struct {
	num  int
	name string
}{
	{1, "SIGHUP"}, {2, "SIGINT"}, {3, "SIGQUIT"}, {10, "SIGUSR1"},
	{12, "SIGUSR2"}, {14, "SIGALRM"}, {15, "SIGTERM"}, {23, "SIGURG"},
}

// threadMasks reads SigBlk of every thread of pid but the main one:
// tid → mask.
func threadMasks(pid int) (map[int]uint64, error) {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	masks := map[int]uint64{}
	for _, d := range dirs {
		tid, err := strconv.Atoi(d.Name())
		if err != nil || tid == pid {
			continue
		}
		b, err := os.ReadFile(filepath.Join(fmt.Sprintf("/proc/%d/task", pid), d.Name(), "status"))
		if err != nil {
			continue // the thread has just exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "SigBlk:"); ok {
				m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err != nil {
					return nil, fmt.Errorf("thread %d: SigBlk %q: %w", tid, v, err)
				}
				masks[tid] = m
			}
		}
	}
	return masks, nil
}

// unblockedServerSignals lists, per thread, the server signals its mask lets
// through.
func unblockedServerSignals(masks map[int]uint64) []string {
	var bad []string
	for tid, m := range masks {
		var names []string
		for _, s := range serverSignals {
			if m&(1<<(s.num-1)) == 0 {
				names = append(names, s.name)
			}
		}
		if len(names) > 0 {
			bad = append(bad, fmt.Sprintf("thread %d (SigBlk %016x): %s", tid, m, strings.Join(names, ", ")))
		}
	}
	return bad
}

// TestWorkerGoThreadsBlockServerSignals: every thread of a task worker but
// its main thread blocks every signal PostgreSQL handles, so a latch
// wake-up or a procsignal sent to the worker always reaches the main thread
// (or its signalfd). Go's threads get the mask of the moment the loader
// dlopen()s the library (all signals blocked; threads started later get the
// same mask, the runtime's initSigmask); SIGURG stays blocked only because
// the library is linked with asyncpreemptoff=1 (without it Go unblocks its
// preemption signal on every thread). The worker has first run a burst of
// tasks and a parallel CREATE INDEX (its parallel worker's messages and the
// postmaster's notices are SIGUSR1, their latch wake-ups SIGURG), so threads
// the runtime started on the way are checked too; they are read from /proc
// while a task runs. Breaking either by hand fails it: built without
// asyncpreemptoff every Go thread lets SIGURG through; without the block
// around dlopen() they let SIGHUP, SIGINT, SIGUSR1, ... through.
func TestWorkerGoThreadsBlockServerSignals(t *testing.T) {
	testkit.Begin(t)
	if testkit.Cluster.Backend() != pgcluster.BackendLocal {
		t.Skip("reads the server's processes in /proc on this host")
	}
	su := testkit.Connect(t, testkit.Superuser)
	alice := testkit.Connect(t, "alice")
	tbl := testkit.Uniq("sigmask_src")
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s AS SELECT md5(i::text) AS t FROM generate_series(1, 200000) i", tbl))
	testkit.MustExec(t, su, fmt.Sprintf("ALTER TABLE %s OWNER TO alice", tbl))
	// A parallel build whatever the table's size, as far as the
	// server's worker slots allow.
	testkit.MustExec(t, su, fmt.Sprintf("ALTER TABLE %s SET (parallel_workers = 2)", tbl))
	t.Cleanup(func() { _ = testkit.Cluster.Exec(testkit.Ctx(t), testkit.DBName, "DROP TABLE IF EXISTS "+tbl) })

	var jobs []int64
	for i := range 50 {
		jobs = append(jobs, testkit.Submit(t, alice, fmt.Sprintf("SELECT %d", i)))
	}
	jobs = append(jobs, testkit.Submit(t, alice, fmt.Sprintf(
		"SET maintenance_work_mem = '256MB'; SET max_parallel_maintenance_workers = 2; CREATE INDEX ON %s (t)", tbl)))
	testkit.RequireSucceeded(t, alice, jobs...)

	rt := testkit.StartTask(t, su, alice, testkit.SleepQuery(60, "sigmask"))
	masks, err := threadMasks(rt.Pid)
	require.NoError(t, err)
	require.NotEmpty(t, masks, "the worker has threads besides its main one (the Go runtime's)")
	require.Empty(t, unblockedServerSignals(masks), "threads of worker %d that let server signals through", rt.Pid)
	testkit.RequireCancelTask(t, alice, rt.ID, true)
	testkit.RequireStopsRunning(t, su, rt)
}
