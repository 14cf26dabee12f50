package control

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// assertBefore checks that call a comes before call b in the calls recorded.
func assertBefore(t *testing.T, calls []string, a, b string) {
	t.Helper()
	i, j := slices.Index(calls, a), slices.Index(calls, b)
	require.GreaterOrEqual(t, i, 0, "%s called", a)
	require.GreaterOrEqual(t, j, 0, "%s called", b)
	assert.Less(t, i, j, "%s before %s in %v", a, b, calls)
}

func TestLauncherStartSweepScoutsEveryDatabase(t *testing.T) {
	c := newCluster()
	c.reconcileNeeded = true
	c.databases = []uint32{dbX, dbY}
	c.demand(keyA, 1)

	_, log := runRounds(t, c, 2)
	assert.Empty(t, c.notes, "the sweep takes no place on the board")
	assert.Equal(t, 1, c.reconciled)
	assert.Equal(t, 1, c.count("Databases"), "the second round has nothing to sweep")
	assert.Equal(t, []launched{{keyA, false}, {scoutY, true}, {scoutX, true}}, c.launches,
		"round 1 starts the scouts of the start sweep (database Y first: X holds a slot already), "+
			"which leave the last slot free; a role's worker is never one")
	assertBefore(t, c.calls, "MarkReconciled", "Launch")
	assert.Empty(t, log.lines)
}

func TestLauncherRetriesTheStartSweepWhenDatabasesFails(t *testing.T) {
	errCatalog := errors.New("pg_database unreadable")
	c := newCluster()
	c.reconcileNeeded = true
	c.databases = []uint32{dbX}
	c.dbErrs = []error{errCatalog}
	c.demand(keyA, 1)

	_, log := runRounds(t, c, 2)
	require.Len(t, log.lines, 1)
	assert.Equal(t, "lantern_async launcher: "+errCatalog.Error(), log.lines[0])
	assert.Equal(t, []string{"Reap", "Slots", "ReconcileNeeded", "TakeOverflow", "Databases", "Wait"}, c.calls[:6],
		"nothing is launched before the start sweep is queued")
	assert.Empty(t, c.notes)
	assert.Equal(t, 1, c.reconciled)
	assert.Equal(t, []launched{{keyA, false}, {scoutX, true}}, c.launches)
}

// The start sweep of a database ends with its scout's clean exit: a scout
// that dies has not done it, and the next one still must.
func TestLauncherStartSweepEndsWithACleanScoutExit(t *testing.T) {
	dbZ := uint32(3)
	clk := &clock{now: epoch}
	c := newCluster()
	c.reconcileNeeded = true
	c.databases = []uint32{dbX, dbY}
	c.reaps = [][]Exit{nil, {{Key: scoutX, Clean: true}}, {{Key: scoutY}}}
	c.before = []func(){
		nil,
		func() {
			c.settle(scoutX)          // X's scout swept and settled
			c.demand(scoutX, 0)       // then a worker of X was lost
			c.demand(Key{DB: dbZ}, 0) // and a database created since wants a scout
		},
		nil,
		func() { clk.now = clk.now.Add(time.Second) }, // Y's backoff is over
	}
	l, log := newLauncher(c, clk.Now)
	c.rounds = 4
	l.Run()

	assert.Equal(t, []launched{
		{scoutX, true}, {scoutY, true}, // round 1
		{Key{DB: dbZ}, false}, {scoutX, false}, // round 2: Z was never served
		// round 3: Y's scout died; held back
		{scoutY, true}, // round 4: its start sweep is still to do
	}, c.launches)
	assert.Equal(t, []string{
		"lantern_async launcher: a scout for database 2 ended without doing its work; next launch in 1s",
	}, log.lines)
}

func TestLauncherScoutsEveryDatabaseAfterAnOverflow(t *testing.T) {
	c := newCluster()
	c.overflow = true
	c.databases = []uint32{dbX, dbY}

	_, log := runRounds(t, c, 2)
	assert.Empty(t, c.notes, "the sweep takes no place on the board it makes up for")
	assert.Equal(t, []launched{{scoutX, false}, {scoutY, false}}, c.launches)
	assert.Zero(t, c.reconciled, "not a start sweep")
	assert.Equal(t, 2, c.count("TakeOverflow"))
	assert.Equal(t, 1, c.count("Databases"), "the overflow was taken once")
	assert.Empty(t, log.lines)
}

func TestLauncherReap(t *testing.T) {
	lostA := Exit{Key: keyA, JobID: 7, Table: tasksTable}
	canceledA := Exit{Key: keyA, JobID: 7, Table: tasksTable, Canceled: true, TasksRun: 2}
	tests := []struct {
		name  string
		slots []Slot // before the reap, with the exited one
		exit  Exit
		lost  []Exit
		notes []Key
	}{
		{name: "a lost task goes to a scout",
			slots: []Slot{busySlot(0, keyA, 7)}, exit: lostA, lost: []Exit{lostA}, notes: []Key{scoutX}},
		{name: "a lost task goes to a scout even when the database has other slots",
			slots: []Slot{busySlot(0, keyA, 7), busySlot(1, keyB, 8)}, exit: lostA, lost: []Exit{lostA}, notes: []Key{scoutX}},
		{name: "a lost task that was being canceled",
			slots: []Slot{busySlot(0, keyA, 7)}, exit: canceledA, lost: []Exit{canceledA}, notes: []Key{scoutX}},
		{name: "the last worker of a database ran tasks: housekeeping",
			slots: []Slot{idleSlot(0, keyA)}, exit: Exit{Key: keyA, Clean: true, TasksRun: 3}, notes: []Key{scoutX}},
		{name: "the last worker died between tasks after running some",
			slots: []Slot{idleSlot(0, keyA)}, exit: Exit{Key: keyA, TasksRun: 2}, notes: []Key{scoutX}},
		{name: "the database still has a worker",
			slots: []Slot{idleSlot(0, keyA), busySlot(1, keyB, 8)}, exit: Exit{Key: keyA, Clean: true, TasksRun: 3}},
		{name: "the database still has a worker of the same role",
			slots: []Slot{idleSlot(0, keyA), busySlot(1, keyA, 8)}, exit: Exit{Key: keyA, Clean: true, TasksRun: 3}},
		{name: "the database still has a scout",
			slots: []Slot{idleSlot(0, keyA), idleSlot(1, scoutX)}, exit: Exit{Key: keyA, Clean: true, TasksRun: 3}},
		{name: "only another database has slots",
			slots: []Slot{idleSlot(0, keyA), busySlot(1, keyC, 8)}, exit: Exit{Key: keyA, Clean: true, TasksRun: 3},
			notes: []Key{scoutX}},
		{name: "a worker that ran nothing",
			slots: []Slot{idleSlot(0, keyA)}, exit: Exit{Key: keyA, Clean: true}},
		{name: "a scout's clean exit",
			slots: []Slot{idleSlot(0, scoutX)}, exit: Exit{Key: scoutX, Clean: true}},
		{name: "a scout that died",
			slots: []Slot{idleSlot(0, scoutX)}, exit: Exit{Key: scoutX}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.slots = tc.slots
			c.nextSlot = len(tc.slots)
			c.reaps = [][]Exit{{tc.exit}}

			runRounds(t, c, 1)
			assert.Equal(t, tc.lost, c.lost, "lost")
			assert.Equal(t, tc.notes, c.notes, "notes")
			if len(tc.lost) > 0 {
				assertBefore(t, c.calls, "Lost", "Note")
			}
		})
	}
}

func TestLauncherReapsFirstAndGoesOnAfterAReapError(t *testing.T) {
	errReap := errors.New("slot array corrupt")
	c := newCluster()
	c.reapErrs = []error{errReap}
	c.demand(keyA, 1)

	_, log := runRounds(t, c, 2)
	assert.Equal(t, []string{"lantern_async launcher: " + errReap.Error()}, log.lines)
	assert.Equal(t, []string{"Reap", "Wait", "Reap", "Slots", "ReconcileNeeded", "TakeOverflow", "Databases", "Slots", "Demands"}, c.calls[:9],
		"a launcher's first round queues a sweep (what an earlier launcher had queued is lost with it)")
	assert.Equal(t, []launched{{keyA, false}}, c.launches, "launched in the second round")
}

func TestLauncherCheckVerdicts(t *testing.T) {
	tests := []struct {
		name      string
		verdict   Verdict // of keyA's demand
		launches  []Key
		forgotten []Key
		forgotDBs []uint32
		notes     []Key
		board     []Key // left on the board
	}{
		{name: "runnable", verdict: Runnable, launches: []Key{keyA, keyC}, board: []Key{keyA, keyC}},
		{name: "database gone", verdict: DatabaseGone, launches: []Key{keyC}, forgotDBs: []uint32{dbX},
			board: []Key{keyC}},
		{name: "role unrunnable: a scout fails its tasks", verdict: RoleUnrunnable, launches: []Key{keyC},
			forgotten: []Key{keyA}, notes: []Key{scoutX}, board: []Key{keyC, scoutX}},
		{name: "database blocked: skipped for now", verdict: DatabaseBlocked, launches: []Key{keyC},
			board: []Key{keyA, keyC}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.demand(keyA, 1)
			c.demand(keyC, 1)
			c.verdicts[keyA] = tc.verdict

			_, log := runRounds(t, c, 1)
			assert.Equal(t, tc.launches, keysOf(c.launches), "launches")
			assert.Equal(t, tc.forgotten, c.forgotten, "Forget")
			assert.Equal(t, tc.forgotDBs, c.forgotDBs, "ForgetDatabase")
			assert.Equal(t, tc.notes, c.notes, "Note")
			var board []Key
			for _, d := range c.board {
				board = append(board, d.Key)
			}
			assert.Equal(t, tc.board, board, "board")
			assert.Empty(t, log.lines)
		})
	}
}

func TestLauncherServesABlockedDatabaseOnceItIsUnblocked(t *testing.T) {
	c := newCluster()
	c.demand(keyA, 1)
	c.verdicts[keyA] = DatabaseBlocked
	c.before = []func(){nil, func() { c.verdicts[keyA] = Runnable }}

	runRounds(t, c, 2)
	assert.Equal(t, []launched{{keyA, false}}, c.launches)
	assert.Empty(t, c.forgotten)
	assert.Empty(t, c.forgotDBs)
}

func TestLauncherForgetsTheBackoffOfADatabaseGone(t *testing.T) {
	for _, tc := range []struct {
		verdict Verdict
		wait    time.Duration
	}{
		{verdict: Runnable, wait: time.Second},
		{verdict: DatabaseGone, wait: naptime},
	} {
		c := newCluster()
		c.demand(keyA, 1)
		c.reaps = [][]Exit{{{Key: keyA}}}
		c.verdicts[keyA] = tc.verdict

		runRounds(t, c, 1)
		assert.Empty(t, c.launches, "verdict %v", tc.verdict)
		assert.Equal(t, []time.Duration{tc.wait}, c.waits, "verdict %v", tc.verdict)
	}
}

func TestLauncherEndsTheRoundOnACheckError(t *testing.T) {
	errCheck := errors.New("pg_authid unreadable")
	c := newCluster()
	c.demand(keyA, 1)
	c.checkErrs = []error{errCheck}

	_, log := runRounds(t, c, 2)
	assert.Equal(t, []string{"lantern_async launcher: " + errCheck.Error()}, log.lines)
	assert.Equal(t, 1, c.count("Launch"), "launched in the second round only")
	assert.Equal(t, "Wait", c.calls[slices.Index(c.calls, "Check")+1], "the failed round ends at once")
}

func TestLauncherLaunchesTheOldestDemandFirst(t *testing.T) {
	c := newCluster()
	c.capacity = 1
	c.board = []Demand{demand(keyB, 5, 1), demand(keyA, 2, 1)}

	runRounds(t, c, 1)
	assert.Equal(t, []launched{{keyA, false}}, c.launches)
}

func TestLauncherCarriesOutThePlan(t *testing.T) {
	c := newCluster()
	c.capacity = 2
	c.slots = []Slot{idleSlot(0, keyA), ran(busySlot(1, keyB, 5), 1)}
	c.nextSlot = 2
	c.demand(keyA, 2)
	c.demand(keyC, 1)
	plan := PlanRound(c.Demands(), c.Slots(), c.capacity)
	require.Equal(t, []int{0}, plan.Wake)
	require.Equal(t, []int{1}, plan.Retire)
	c.calls = nil

	runRounds(t, c, 1)
	assert.Equal(t, []int{0}, c.woken)
	assert.Equal(t, []int{1}, c.retired)
	assert.Empty(t, c.launches, "no slot is free")

	c = newCluster()
	c.capacity = 5
	c.slots = []Slot{idleSlot(0, keyA)}
	c.nextSlot = 1
	c.demand(keyA, 10)
	c.demand(keyC, 2)
	runRounds(t, c, 1)
	assert.Equal(t, []Key{keyC, keyA, keyC, keyA}, keysOf(c.launches), "as PlanRound orders them")
	assert.Equal(t, []int{0}, c.woken)
	assertBefore(t, c.calls, "Wake", "Launch")
}

func TestLauncherStopsLaunchingWhenALaunchFails(t *testing.T) {
	errLaunch := errors.New("fork failed")
	tests := []struct {
		name string
		ok   bool
		err  error
		logs []string
	}{
		{name: "no process could start now", ok: false},
		{name: "launch error", ok: true, err: errLaunch, logs: []string{"lantern_async launcher: fork failed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.demand(keyA, 3)
			c.demand(keyC, 1)
			c.launchOK = []bool{tc.ok}
			c.launchErrs = []error{tc.err}

			_, log := runRounds(t, c, 1)
			assert.Equal(t, []launched{{keyA, false}}, c.launches, "the rest of the plan waits")
			assert.Equal(t, tc.logs, log.lines)
		})
	}
}

// A refused launch ends the round's plan, and nobody wakes the launcher
// when a background worker process frees up or a block ends: it tries
// again after LaunchRetry, not after a whole naptime.
func TestLauncherTriesAgainSoonAfterARefusedLaunch(t *testing.T) {
	c := newCluster()
	c.demand(keyA, 1)
	c.launchOK = []bool{false}
	l, _ := newLauncher(c, fixedNow)
	l.LaunchRetry = time.Second
	c.rounds = 3
	l.Run()

	assert.Equal(t, []launched{{keyA, false}, {keyA, false}}, c.launches, "refused, then launched")
	assert.Equal(t, []time.Duration{time.Second, naptime, naptime}, c.waits,
		"look again after LaunchRetry, then nap as usual")
}

func TestLauncherRunStopsWhenWaitSaysSo(t *testing.T) {
	c := newCluster()
	runRounds(t, c, 3)
	assert.Equal(t, 3, c.count("Reap"))
	assert.Equal(t, "Wait", c.calls[len(c.calls)-1])
	assert.Equal(t, []time.Duration{naptime, naptime, naptime}, c.waits)
}

// The slots are read before the board: a claim lowers the board's count
// before its slot shows the task, so only this order never counts a task
// being claimed twice (and starts no second worker for it).
func TestLauncherReadsSlotsBeforeTheBoard(t *testing.T) {
	c := newCluster()
	c.demand(keyA, 1)
	runRounds(t, c, 1)
	assertBefore(t, c.calls[2:], "Slots", "Demands")
}

// A database whose finished tasks fall due for deletion gets a scout, and
// nothing else: no worker, no place on the board. One not due yet gets none.
func TestLauncherScoutsADatabaseWhoseHistoryIsDue(t *testing.T) {
	c := newCluster()
	c.retention = time.Hour
	c.historyNotes = []HistoryNote{
		{DB: dbX, Finished: epoch.Add(-time.Hour), NoteGen: 1},
		{DB: dbY, Finished: epoch.Add(-time.Hour + time.Second), NoteGen: 2},
	}
	runRounds(t, c, 1)
	assert.Empty(t, c.notes)
	assert.Equal(t, []launched{{scoutX, false}}, c.launches)
}
