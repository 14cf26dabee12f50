package control

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/bgworker"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type settleCall struct {
	Sel     Selection
	From    bgworker.Status
	Outcome bgworker.Outcome
}

// fakeCluster is a scripted Cluster that records what the dispatcher does.
// Per-call scripts (reaps, reapErrs, queuesErrs, settleErrs) are consumed one entry
// per call; once empty, the call has the default result.
type fakeCluster struct {
	installed       bool
	installedErr    error
	reconcileNeeded bool
	queues          []RoleQueue
	queuesErrs      []error
	slots           []Slot
	capacity        int
	reaps           [][]Exit
	reapErrs        []error // a failed Reap reaps nothing
	launchOK        bool
	launchErr       error
	settleErrs      []error
	settleCount     int64
	rounds          int // Wait returns true on this call

	calls      []string // every method, in call order
	settles    []settleCall
	launches   []uint32
	woken      []int
	retired    []int
	waits      []time.Duration
	reconciled int
}

func newCluster() *fakeCluster {
	return &fakeCluster{installed: true, capacity: 4, launchOK: true, rounds: 1}
}

func pop[T any](script *[]T) (v T) {
	if len(*script) > 0 {
		v, *script = (*script)[0], (*script)[1:]
	}
	return v
}

func (c *fakeCluster) record(call string) { c.calls = append(c.calls, call) }

func (c *fakeCluster) Installed() (bool, error) {
	c.record("Installed")
	return c.installed, c.installedErr
}

func (c *fakeCluster) ReconcileNeeded() bool {
	c.record("ReconcileNeeded")
	return c.reconcileNeeded
}

func (c *fakeCluster) MarkReconciled() {
	c.record("MarkReconciled")
	c.reconcileNeeded = false
	c.reconciled++
}

func (c *fakeCluster) Queues() ([]RoleQueue, error) {
	c.record("Queues")
	if err := pop(&c.queuesErrs); err != nil {
		return nil, err
	}
	return c.queues, nil
}

func (c *fakeCluster) Slots() []Slot {
	c.record("Slots")
	return c.slots
}

func (c *fakeCluster) Launch(roleID uint32) (bool, error) {
	c.record("Launch")
	c.launches = append(c.launches, roleID)
	return c.launchOK, c.launchErr
}

func (c *fakeCluster) Wake(slot int) {
	c.record("Wake")
	c.woken = append(c.woken, slot)
}

func (c *fakeCluster) Retire(slot int) {
	c.record("Retire")
	c.retired = append(c.retired, slot)
}

func (c *fakeCluster) Reap() ([]Exit, error) {
	c.record("Reap")
	if err := pop(&c.reapErrs); err != nil {
		return nil, err
	}
	return pop(&c.reaps), nil
}

func (c *fakeCluster) Settle(sel Selection, from bgworker.Status, o bgworker.Outcome) (int64, error) {
	c.record("Settle")
	c.settles = append(c.settles, settleCall{Sel: sel, From: from, Outcome: o})
	if err := pop(&c.settleErrs); err != nil {
		return 0, err
	}
	return c.settleCount, nil
}

func (c *fakeCluster) Wait(timeout time.Duration) bool {
	c.record("Wait")
	c.waits = append(c.waits, timeout)
	return len(c.waits) >= c.rounds
}

func (c *fakeCluster) Capacity() int {
	c.record("Capacity")
	return c.capacity
}

// count returns how many times a method was called.
func (c *fakeCluster) count(method string) int {
	n := 0
	for _, call := range c.calls {
		if call == method {
			n++
		}
	}
	return n
}

type fakeLogger struct{ lines []string }

func (l *fakeLogger) Logf(format string, args ...any) {
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

const naptime = 7 * time.Second

// tasksTable is the OID of lantern.tasks the reaped tasks came from.
const tasksTable uint32 = 16384

var epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return epoch }

// lostJobs are exits of workers that died while running these tasks.
func lostJobs(ids ...int64) []Exit {
	exits := make([]Exit, 0, len(ids))
	for _, id := range ids {
		exits = append(exits, Exit{RoleID: roleA, JobID: id, Table: tasksTable})
	}
	return exits
}

// runRounds runs a dispatcher over c for the given number of rounds.
func runRounds(t *testing.T, c *fakeCluster, rounds int) *fakeLogger {
	t.Helper()
	c.rounds = rounds
	log := &fakeLogger{}
	(&Dispatcher{Cluster: c, Log: log, Naptime: naptime, Now: fixedNow}).Run()
	require.Len(t, c.waits, rounds, "rounds run")
	for _, w := range c.waits {
		assert.Equal(t, naptime, w, "Wait timeout")
	}
	return log
}

// assertFailure checks a settle call that fails tasks with a given message.
func assertFailure(t *testing.T, got settleCall, sel Selection, from bgworker.Status, jobID int64, code, msgPrefix string) {
	t.Helper()
	assert.Equal(t, sel, got.Sel, "selection")
	assert.Equal(t, from, got.From, "from")
	assert.Equal(t, jobID, got.Outcome.JobID, "job id")
	assert.Equal(t, bgworker.Failed, got.Outcome.Status, "status")
	assert.Equal(t, code, got.Outcome.SQLState, "sqlstate")
	assert.Truef(t, strings.HasPrefix(got.Outcome.Message, msgPrefix),
		"message %q should start with %q", got.Outcome.Message, msgPrefix)
}

const (
	serverStoppedMsg = "ERROR:  the server stopped while this task was running"
	workerLostMsg    = "ERROR:  the process running this task exited before the task finished"
)

func TestDispatcherDoesNothingWithoutExtension(t *testing.T) {
	errCatalog := errors.New("catalog unreadable")
	tests := []struct {
		name     string
		err      error
		wantLogs int
	}{
		{name: "not installed"},
		{name: "installed check fails", err: errCatalog, wantLogs: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.installed = tc.err != nil // the error wins over the result
			c.installedErr = tc.err
			c.reconcileNeeded = true
			c.queues = []RoleQueue{queue("a", roleA, 3)}

			log := runRounds(t, c, 2)
			assert.Equal(t, 2, c.count("Installed"))
			for _, m := range []string{"ReconcileNeeded", "MarkReconciled", "Queues", "Launch", "Settle"} {
				assert.Zero(t, c.count(m), m)
			}
			require.Len(t, log.lines, tc.wantLogs)
			for _, line := range log.lines {
				assert.Contains(t, line, errCatalog.Error())
			}
		})
	}
}

func TestDispatcherReconcilesOnce(t *testing.T) {
	c := newCluster()
	c.reconcileNeeded = true
	c.settleCount = 3
	c.queues = []RoleQueue{queue("a", roleA, 1)}

	log := runRounds(t, c, 3)
	require.Len(t, c.settles, 1)
	assertFailure(t, c.settles[0], Selection{}, bgworker.Running, 0, "57P01", serverStoppedMsg)
	assert.Equal(t, 1, c.reconciled)
	// Reconciled before anything is launched in the first round.
	assert.Equal(t, []string{
		"Reap", "Installed", "ReconcileNeeded", "Settle", "MarkReconciled",
		"Queues", "Slots", "Capacity", "Launch", "Wait",
	}, c.calls[:10])
	require.Len(t, log.lines, 1)
	assert.Contains(t, log.lines[0], "3 task(s)")
}

func TestDispatcherRetriesFailedReconcile(t *testing.T) {
	errSettle := errors.New("settle failed")
	c := newCluster()
	c.reconcileNeeded = true
	c.settleErrs = []error{errSettle}
	c.queues = []RoleQueue{queue("a", roleA, 1)}

	log := runRounds(t, c, 3)
	require.Len(t, c.settles, 2)
	for _, s := range c.settles {
		assertFailure(t, s, Selection{}, bgworker.Running, 0, "57P01", serverStoppedMsg)
	}
	assert.Equal(t, 1, c.reconciled)
	require.Len(t, log.lines, 1)
	assert.Contains(t, log.lines[0], errSettle.Error())
	// Nothing may start before the old life's tasks are failed.
	assert.Equal(t, []string{"Reap", "Installed", "ReconcileNeeded", "Settle", "Wait"}, c.calls[:5])
}

func TestDispatcherSettlesReapedJobs(t *testing.T) {
	c := newCluster()
	c.reaps = [][]Exit{lostJobs(7, 8), nil, lostJobs(9)}

	log := runRounds(t, c, 3)
	require.Len(t, c.settles, 3)
	for i, jobID := range []int64{7, 8, 9} {
		assertFailure(t, c.settles[i], Selection{}, bgworker.Running, jobID, "57P01", workerLostMsg)
		assert.Equal(t, tasksTable, c.settles[i].Outcome.Table, "table")
	}
	assert.Empty(t, log.lines)
}

// Reap reports each ended worker once: a task whose settle failed must be
// retried in a later round, and the rest of its batch too.
func TestDispatcherKeepsReapedJobsWhenSettleFails(t *testing.T) {
	c := newCluster()
	c.reaps = [][]Exit{lostJobs(7, 8)}
	c.settleErrs = []error{errors.New("lock timeout")}

	log := runRounds(t, c, 2)
	require.Len(t, log.lines, 1)
	settled := map[int64]bool{}
	for _, s := range c.settles[1:] { // the first call failed
		settled[s.Outcome.JobID] = true
	}
	assert.True(t, settled[7], "job 7 is settled after a failed attempt")
	assert.True(t, settled[8], "job 8 is settled although job 7's settle failed")
}

func TestDispatcherRefusesUnrunnableQueues(t *testing.T) {
	tests := []struct {
		name   string
		queue  RoleQueue
		sel    Selection
		code   string
		prefix string
		detail string
	}{
		{name: "rows not submitted through async_task", queue: unowned("mallory", 2),
			sel:  Selection{RoleID: 0, Unowned: true},
			code: "42501", prefix: "ERROR:  this task was not submitted through lantern.async_task()\nDETAIL:  "},
		{name: "dropped role", queue: dropped(queue("ghost", roleB, 2)),
			sel:  Selection{RoleID: roleB},
			code: "42704", prefix: "ERROR:  the role that submitted this task no longer exists\nDETAIL:  ",
			detail: `Role "ghost" (OID 20) was dropped`},
		{name: "dropped role that cannot log in either", queue: noLogin(dropped(queue("ghost", roleB, 2))),
			sel:  Selection{RoleID: roleB},
			code: "42704", prefix: "ERROR:  the role that submitted this task no longer exists\nDETAIL:  ",
			detail: `Role "ghost" (OID 20) was dropped`},
		{name: "role without login", queue: noLogin(queue("locked", roleC, 2)),
			sel:  Selection{RoleID: roleC},
			code: "28000", prefix: `ERROR:  role "locked" is not permitted to log in` + "\nDETAIL:  "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.queues = []RoleQueue{tc.queue, queue("a", roleA, 1)}

			log := runRounds(t, c, 1)
			require.Len(t, c.settles, 1)
			assertFailure(t, c.settles[0], tc.sel, bgworker.Pending, 0, tc.code, tc.prefix)
			assert.Contains(t, c.settles[0].Outcome.Message, tc.detail)
			assert.Equal(t, []uint32{roleA}, c.launches)
			assert.Empty(t, log.lines)
		})
	}
}

func TestDispatcherSettlesLostTasksCanceledOrFailed(t *testing.T) {
	c := newCluster()
	c.reaps = [][]Exit{{
		{RoleID: roleA, JobID: 7, Table: tasksTable, Canceled: true},
		{RoleID: roleB, JobID: 8, Table: tasksTable},
	}}

	runRounds(t, c, 1)
	require.Len(t, c.settles, 2)
	assert.Equal(t, settleCall{Sel: Selection{}, From: bgworker.Running, Outcome: bgworker.Outcome{
		JobID: 7, Table: tasksTable, Status: bgworker.Canceled, Message: "Canceled by user", SQLState: "57014",
	}}, c.settles[0])
	assertFailure(t, c.settles[1], Selection{}, bgworker.Running, 8, "57P01", workerLostMsg)
	assert.Equal(t, tasksTable, c.settles[1].Outcome.Table, "table")
}

func TestDispatcherLogsReapErrorAndGoesOn(t *testing.T) {
	errReap := errors.New("slot array corrupt")
	c := newCluster()
	c.reapErrs = []error{errReap}
	c.queues = []RoleQueue{queue("a", roleA, 1)}

	log := runRounds(t, c, 2)
	require.Len(t, log.lines, 1)
	assert.Contains(t, log.lines[0], errReap.Error())
	// The failed round stops at Reap; the next one runs in full.
	assert.Equal(t, []string{"Reap", "Wait", "Reap", "Installed"}, c.calls[:4])
	assert.Equal(t, []uint32{roleA}, c.launches)
}

func TestDispatcherLaunchesThePlan(t *testing.T) {
	c := newCluster()
	c.capacity = 5
	c.queues = []RoleQueue{queue("a", roleA, 10), queue("b", roleB, 2)}
	c.slots = []Slot{idle(roleA)}

	log := runRounds(t, c, 1)
	// b holds no worker yet, a holds one: b goes first.
	assert.Equal(t, []uint32{roleB, roleA, roleB, roleA}, c.launches)
	assert.Equal(t, PlanRound(c.queues, c.slots, c.capacity).Launch, c.launches)
	assert.Empty(t, c.settles)
	assert.Empty(t, log.lines)
}

func TestDispatcherStopsLaunchingWhenLaunchFails(t *testing.T) {
	errLaunch := errors.New("fork failed")
	tests := []struct {
		name     string
		ok       bool
		err      error
		wantLogs int
	}{
		{name: "no worker could be started", ok: false},
		{name: "launch error", ok: true, err: errLaunch, wantLogs: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.queues = []RoleQueue{queue("a", roleA, 3)}
			c.launchOK, c.launchErr = tc.ok, tc.err

			log := runRounds(t, c, 1)
			assert.Equal(t, []uint32{roleA}, c.launches)
			require.Len(t, log.lines, tc.wantLogs)
			for _, line := range log.lines {
				assert.Contains(t, line, errLaunch.Error())
			}
		})
	}
}

func TestDispatcherLogsQueuesErrorAndGoesOn(t *testing.T) {
	errQueues := errors.New("queues failed")
	c := newCluster()
	c.queuesErrs = []error{errQueues}
	c.queues = []RoleQueue{queue("a", roleA, 1)}

	log := runRounds(t, c, 2)
	require.Len(t, log.lines, 1)
	assert.Contains(t, log.lines[0], errQueues.Error())
	assert.Contains(t, log.lines[0], "lantern_async dispatcher")
	assert.Equal(t, 2, c.count("Queues"))
	assert.Equal(t, []uint32{roleA}, c.launches, "launched in the second round only")
	assert.Equal(t, []string{"Reap", "Installed", "ReconcileNeeded", "Queues", "Wait"}, c.calls[:5])
}
