package scheduling

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
)

// A slot the launcher reserved (LAUNCHING) for a worker
// that never attaches, when that launcher ends before it learns so, must
// not be lost until the server restarts (max_workers one smaller each
// time). Made to happen for certain, on a cluster of its own with
// max_workers = 1, so that a lost slot means no task ever runs again:
//
//  1. the postmaster is stopped (SIGSTOP); a session opened before submits
//     a task, and the launcher reserves the one slot and registers the
//     worker (the postmaster's SIGUSR1 is pending);
//  2. the launcher is stopped (SIGTERM: it exits, and the postmaster starts
//     it again 5 s later, bgw_restart_time), taking the worker's handle
//     with it;
//  3. the postmaster runs again under a soft process limit of 1, so it
//     cannot fork the worker ("could not fork worker process"): the
//     registration is dropped, and nobody attaches to the slot; the limit
//     is put back at once.
//
// The new launcher reclaims the slot (la_slot_reclaim) and the task runs.
// Before, the slot stayed LAUNCHING for good and the task pending.
func TestLaunchingSlotOfAnEndedLauncherIsReclaimed(t *testing.T) {
	testkit.Begin(t)
	extra := testkit.StartExtraCluster(t, pgcluster.Options{MaxWorkers: 1, ExtraConf: []string{
		"autovacuum = off", // nothing else signals the stopped postmaster
		"log_min_messages = debug1",
	}})
	if extra.Backend() != pgcluster.BackendLocal {
		t.Skip("signals and limits the server's processes on this host")
	}
	su := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser)
	testkit.MustExec(t, su, "CREATE EXTENSION lantern_async")
	// The one slot free: no worker idles in it, no scout sweeps.
	testkit.WaitQuiet(t, extra, testkit.WaitTimeout, "the start sweep to end", nil)

	launcher := testkit.LauncherPid(t, su)
	postmaster := parentPid(t, launcher)
	conn := testkit.ConnectTo(t, extra, testkit.DBName, testkit.Superuser) // no new connection while the postmaster is stopped

	asServerUser(t, "kill", "-STOP", strconv.Itoa(postmaster))
	stopped := true
	cont := func() {
		if stopped {
			asServerUser(t, "kill", "-CONT", strconv.Itoa(postmaster))
			stopped = false
		}
	}
	t.Cleanup(cont)
	id := testkit.Submit(t, conn, "SELECT 1")
	testkit.RequirePoll(t, testkit.WaitTimeout, "the launcher to register a worker (SIGUSR1 pending at the stopped postmaster)", func() (bool, string) {
		pending := signalsPending(t, postmaster)
		return pending&(1<<9) != 0, fmt.Sprintf("pending %#x", pending)
	})
	asServerUser(t, "kill", "-TERM", strconv.Itoa(launcher))
	testkit.RequirePoll(t, testkit.WaitTimeout, "the launcher to exit", func() (bool, string) {
		state := processState(launcher)
		return state == "Z" || state == "", "state " + state
	})

	soft, hard := nprocLimits(t, postmaster)
	from := len(extra.Log())
	asServerUser(t, "prlimit", "--pid", strconv.Itoa(postmaster), "--nproc=1:"+hard)
	limited := true
	restore := func() {
		if limited {
			asServerUser(t, "prlimit", "--pid", strconv.Itoa(postmaster), "--nproc="+soft+":"+hard)
			limited = false
		}
	}
	t.Cleanup(restore)
	cont()
	testkit.RequirePoll(t, testkit.WaitTimeout, "the postmaster to fail to fork the worker", func() (bool, string) {
		return strings.Contains(extra.Log()[from:], "could not fork worker process"), "not yet"
	})
	restore()

	// The launcher comes back 5 s after it ended; with the slot lost, the
	// task would stay pending for good.
	testkit.RequireSucceededWithin(t, conn, id, testkit.WaitTimeout)
	require.NotEqual(t, launcher, testkit.LauncherPid(t, conn), "a new launcher")
}

// asServerUser runs a command as the server's OS user (postgres when the
// tests run as root, as pgcluster's local machine does).
func asServerUser(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
	return string(out)
}

// procStat returns the fields of /proc/<pid>/stat after the command name
// (field 3, the state, first); nil when the process is gone.
func procStat(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(raw)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

func processState(pid int) string {
	if f := procStat(pid); len(f) > 0 {
		return f[0]
	}
	return ""
}

func parentPid(t *testing.T, pid int) int {
	t.Helper()
	f := procStat(pid)
	require.NotEmpty(t, f, "process %d", pid)
	ppid, err := strconv.Atoi(f[1])
	require.NoError(t, err)
	return ppid
}

// signalsPending is the process's shared pending signal mask (ShdPnd).
func signalsPending(t *testing.T, pid int) uint64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "ShdPnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			require.NoError(t, err)
			return mask
		}
	}
	t.Fatalf("no ShdPnd in /proc/%d/status", pid)
	return 0
}

// nprocLimits reads a process's soft and hard RLIMIT_NPROC.
func nprocLimits(t *testing.T, pid int) (soft, hard string) {
	t.Helper()
	out := asServerUser(t, "prlimit", "--pid", strconv.Itoa(pid), "--nproc", "-o", "SOFT,HARD", "--noheadings", "--raw")
	f := strings.Fields(out)
	require.Len(t, f, 2, "prlimit said %q", out)
	return f[0], f[1]
}
