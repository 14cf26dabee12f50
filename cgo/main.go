// Command lantern_async_go is the Go half of lantern_async, built with
// -buildmode=c-shared and dlopen()ed by the C loader inside each background
// worker after fork (see loader/entry/loader.c). It holds the entry points
// and the adapters that give the pure-Go packages bgworker and control
// their PostgreSQL side; the C they call is in helpers/.
//
// Only the goroutine running inside an entry point may call PostgreSQL:
// it is the one pinned to PostgreSQL's single thread. Every C helper
// checks this.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/loader -I${SRCDIR}/helpers
#cgo LDFLAGS: -Wl,--unresolved-symbols=ignore-all
#include "la_call.h"
#include "state/la_state.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"time"

	"github.com/lanterndata/lantern_async/bgworker"
	// The C helpers the adapters here call (cgo/helpers): linked in for their C objects.
	_ "github.com/lanterndata/lantern_async/cgo/helpers"
	"github.com/lanterndata/lantern_async/control"
)

// launcherNaptime bounds how long a missed wake-up can delay a task; every
// expected one is explicit (a commit, a process that ended).
const launcherNaptime = 10 * time.Second

// blockedRetry is how soon a worker tries again to record an outcome when
// the queue's table could not be locked at once (loader/tables/catalog.c).
const blockedRetry = 100 * time.Millisecond

// blockedGrace is how long a worker tries to record an outcome while the
// queue's table cannot be locked before it parks the outcome for a scout
// and gives its slot up: a user's lock request queued on the table may
// wait for as long as its session likes, and the slot must not.
const blockedGrace = time.Second

// scoutRest is the least time between two scouts of one database.
const scoutRest = time.Second

// blockedRecheck is how soon the launcher looks again at a database that a
// DROP/ALTER/CREATE DATABASE blocks (a block ends 100 ms after its command).
const blockedRecheck = 50 * time.Millisecond

// launchRetry is how soon the launcher tries again after PostgreSQL
// refused a launch (no background worker process free): once a second
// at most while that lasts, rather than a whole naptime.
const launchRetry = time.Second

// workerIdleTimeout is lantern_async.worker_idle_timeout: how long a worker
// waits for more tasks of its role before it exits; a submit's commit
// wakes it.
func workerIdleTimeout() time.Duration {
	return time.Duration(C.la_worker_idle_timeout) * time.Millisecond
}

// taskTimeout is lantern_async.task_timeout as this worker's session sees
// it now (the task's role and database settings apply: the worker logged
// in as that role, there): the limit of a task without its own timeout.
func taskTimeout() time.Duration {
	return time.Duration(C.la_task_timeout) * time.Millisecond
}

// A (database, role) whose workers end without finishing a task is
// relaunched no sooner than this, doubling up to the maximum: no user can
// make the server fork in a loop.
const (
	launchBackoffMin = 250 * time.Millisecond
	launchBackoffMax = time.Minute
)

// Exit codes for the C caller's proc_exit: 1 makes the postmaster restart a
// static worker such as the launcher; dynamic workers never restart.
const (
	exitDone    = 0
	exitRestart = 1
	exitNotDone = 2 // left before its work was done (not a clean exit)
)

func main() {}

// enter pins this goroutine to PostgreSQL's thread and sets up the helpers'
// memory; false means the process cannot go on (the error is in the log).
func enter() bool {
	runtime.LockOSThread()
	// One goroutine calls PostgreSQL, from inside cgo calls, and no other
	// does Go work; the second P stays idle, and that is its use. With a
	// single P, sysmon takes it from every cgo call that outlasts its 20 µs
	// tick (no P is idle), wakes a thread that finds nothing to do, and keeps
	// ticking every 20 µs: 1.9 extra context switches and about 80 µs of
	// CPU per trivial task (claim 390-460 µs against 270-290 µs with two).
	// With an idle P it leaves a cgo call alone for 10 ms, backs off to a
	// 10 ms tick, and sleeps once both Ps are idle: idle CPU stays 0.00 %.
	// Environment variables never reach Go here, so it is set in code.
	runtime.GOMAXPROCS(2)
	return bool(C.la_call_init())
}

//export LanternAsyncWorkerMain
func LanternAsyncWorkerMain(slot C.int) C.int {
	if !enter() {
		return exitRestart
	}
	pg := newPG()
	w := bgworker.Worker{
		Queue:         &taskQueue{pg: pg, slot: slot},
		Session:       &session{pg: pg, slot: slot},
		StopRequested: pg.stopRequested,
		Log:           pg,
		IdleTimeout:   workerIdleTimeout,
		BlockedRetry:  blockedRetry,
		BlockedGrace:  blockedGrace,
		Wait:          pg.wait,
		Retiring:      func() bool { return bool(C.la_slot_retiring(slot)) },
		WentIdle:      wakeLauncher,
		TaskTimeout:   taskTimeout,
		Now:           time.Now,
	}
	if current, err := rememberSettings(pg); err != nil {
		pg.Logf("lantern_async worker: could not read the role's and database's settings: %v", err)
		return exitRestart
	} else if !current {
		// Leave the tasks to a new session, before claiming any.
		pg.Debugf("lantern_async worker: the role's or database's settings changed as it logged in")
		return exitDone
	}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	err := w.Run()
	// For make bench: ALTER ROLE ... SET log_min_messages = debug1 shows these.
	pg.Debugf("lantern_async worker: %v", w.Costs())
	pg.Debugf("lantern_async worker: %s", goHeapSince(&before))
	if err != nil {
		pg.Logf("lantern_async worker: %v", err)
		return exitRestart
	}
	return exitDone
}

// wakeLauncher tells the launcher that a worker ran out of tasks: it may
// give that worker's slot to a role that waits for one (never errors).
func wakeLauncher() { C.la_launcher_wake() }

// goHeapSince tells what the Go heap did since before: what the worker's
// Go code allocates per task, and whether the collector kept up.
func goHeapSince(before *runtime.MemStats) string {
	var now runtime.MemStats
	runtime.ReadMemStats(&now)
	return fmt.Sprintf("Go heap: %d bytes in %d objects allocated, %d collections, %d kB in use, %d kB from the OS",
		now.TotalAlloc-before.TotalAlloc, now.Mallocs-before.Mallocs, now.NumGC-before.NumGC,
		now.HeapInuse/1024, now.HeapSys/1024)
}

//export LanternAsyncLauncherMain
func LanternAsyncLauncherMain(C.int) C.int {
	if !enter() {
		return exitRestart
	}
	pg := newPG()
	l := control.Launcher{
		Cluster:        &cluster{pg: pg},
		Log:            pg,
		Naptime:        launcherNaptime,
		ScoutRest:      scoutRest,
		BlockedRecheck: blockedRecheck,
		LaunchRetry:    launchRetry,
		Backoff:        control.Backoff{Min: launchBackoffMin, Max: launchBackoffMax},
		Now:            time.Now,
	}
	l.Run()
	return exitRestart
}

//export LanternAsyncScoutMain
func LanternAsyncScoutMain(slot C.int) C.int {
	if !enter() {
		return exitRestart
	}
	pg := newPG()
	s := control.Scout{
		Site:       newSite(pg, slot),
		Log:        pg,
		StartSweep: bool(C.la_slot_start_sweep(slot)),
	}
	swept, err := s.Run()
	if err != nil {
		pg.Logf("lantern_async scout: %v", err)
		return exitRestart
	}
	if !swept {
		return exitNotDone
	}
	return exitDone
}
