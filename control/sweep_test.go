package control

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The board of demand.c has this many places.
const boardPlaces = 512

// manyDatabases lists n database OIDs, none of them dbX, dbY or dbZ.
func manyDatabases(n int) []uint32 {
	dbs := make([]uint32, n)
	for i := range dbs {
		dbs[i] = uint32(100 + i)
	}
	return dbs
}

// scoutsFinish makes, before each of rounds rounds, every scout in a slot
// sweep its database and exit cleanly (settling its entry on the board),
// as the scout of a database with nothing queued does; then runs a new
// launcher over c. It returns the launcher.
func scoutsFinish(t *testing.T, c *fakeCluster, rounds int, extra map[int]func()) *Launcher {
	t.Helper()
	c.before = make([]func(), rounds)
	for i := 1; i < rounds; i++ {
		c.before[i] = func() {
			var exits []Exit
			for _, s := range c.slots {
				if s.Scout() {
					exits = append(exits, Exit{Key: s.Key, Clean: true})
					c.settle(s.Key)
				}
			}
			c.reaps = [][]Exit{exits}
			if f := extra[i]; f != nil {
				f()
			}
		}
	}
	l, _ := newLauncher(c, fixedNow)
	c.rounds = rounds
	l.Run()
	return l
}

// keysChecked counts the Checks that asked about a key (an empty one
// touches no catalog: cluster.Check).
func keysChecked(c *fakeCluster) int {
	n := 0
	for _, k := range c.checked {
		if k > 0 {
			n++
		}
	}
	return n
}

// scoutLaunches counts the scouts launched per database, and how many of
// them were for the start sweep.
func scoutLaunches(ls []launched) (per map[uint32]int, start int) {
	per = make(map[uint32]int)
	for _, l := range ls {
		if l.Scout() {
			per[l.DB]++
			if l.StartSweep {
				start++
			}
		}
	}
	return per, start
}

// More databases than the board has places: the start sweep scouts each
// once, within max_workers - 1 slots per round, and ends; afterwards a
// round touches neither pg_database nor the catalogs. Before, the sweep
// was noted on the board, overflowed it, and the overflow asked for the
// whole sweep again, for good.
func TestLauncherStartSweepOfMoreDatabasesThanTheBoardHoldsEnds(t *testing.T) {
	for _, n := range []int{boardPlaces + 1, 1500, 10000} {
		c := newCluster()
		c.boardCap = boardPlaces
		c.reconcileNeeded = true
		c.databases = manyDatabases(n)
		perRound := c.capacity - 1 // the sweep leaves one slot free
		sweepRounds := (n + perRound - 1) / perRound
		const after = 20
		l := scoutsFinish(t, c, sweepRounds+after, nil)

		per, start := scoutLaunches(c.launches)
		require.Len(t, per, n, "%d databases: each scouted", n)
		for db, k := range per {
			require.Equal(t, 1, k, "%d databases: scouts of database %d", n, db)
		}
		assert.Equal(t, n, start, "%d databases: every scout is a start sweep's", n)
		assert.Equal(t, 1, c.count("Databases"), "%d databases: pg_database read once", n)
		assert.Empty(t, c.board, "%d databases: the board is left empty", n)
		assert.True(t, l.sweep.empty(), "%d databases: the sweep is over", n)
		for i, k := range c.checked {
			require.LessOrEqual(t, k, c.capacity, "%d databases: keys checked in the %d-th Check", n, i)
		}
		assert.LessOrEqual(t, keysChecked(c), sweepRounds+1, "%d databases: Checks with keys", n)
		assert.Zero(t, c.count("Note"), "%d databases: nothing noted on the board", n)
	}
}

// After the sweep the launcher is idle: the last rounds, with nothing
// queued and nothing running, launch nothing and look at no catalog.
func TestLauncherIdleAfterTheSweep(t *testing.T) {
	const n = 2000
	c := newCluster()
	c.boardCap = boardPlaces
	c.reconcileNeeded = true
	c.databases = manyDatabases(n)
	sweepRounds := (n + c.capacity - 2) / (c.capacity - 1)
	var launches, checks, reads int
	done := map[int]func(){sweepRounds + 1: func() {
		launches, checks, reads = len(c.launches), keysChecked(c), c.count("Databases")
	}}
	scoutsFinish(t, c, sweepRounds+30, done)
	require.Equal(t, n, launches, "scouts launched by the end of the sweep")
	assert.Equal(t, launches, len(c.launches), "launches in the 29 idle rounds after it")
	assert.Equal(t, checks, keysChecked(c), "Checks with keys in the idle rounds (none is a catalog look: cluster.Check)")
	assert.Equal(t, reads, c.count("Databases"), "pg_database reads in the idle rounds")
	for _, w := range c.waits[sweepRounds+1:] {
		assert.Equal(t, naptime, w, "an idle round sleeps the naptime")
	}
}

// A task committed during the sweep gets the slot the sweep leaves free,
// in the round its commit wakes, whatever the number of databases queued.
func TestLauncherTaskDuringTheSweepStartsAtOnce(t *testing.T) {
	c := newCluster()
	c.boardCap = boardPlaces
	c.reconcileNeeded = true
	c.databases = manyDatabases(3000)
	c.before = []func(){nil, func() { c.demand(keyA, 1) }} // scouts still running
	runRounds(t, c, 2)
	require.Len(t, c.launches, 4)
	assert.Equal(t, launched{keyA, false}, c.launches[3], "round 2 starts the task's worker in the free slot")
}

// The board overflows during a sweep (a burst of submits in more
// databases and roles than it has places): the databases still queued
// keep their place, the ones swept since are queued again, and the sweep
// ends. Before, each overflow noted every database on the full board,
// which overflowed again.
func TestLauncherOverflowDuringASweepDoesNotStartItOver(t *testing.T) {
	const n = 1200
	c := newCluster()
	c.boardCap = boardPlaces
	c.reconcileNeeded = true
	c.databases = manyDatabases(n)
	burst := func() {
		for i := range boardPlaces + 1 { // one more than the board holds: overflow
			c.demand(Key{DB: 100 + uint32(i), Role: 10}, 1)
		}
	}
	// The workers of the burst find their tasks and leave.
	drain := func() {
		var exits []Exit
		for _, s := range c.slots {
			if !s.Scout() {
				exits = append(exits, Exit{Key: s.Key, Clean: true, TasksRun: 1})
				c.settle(s.Key)
			}
		}
		if len(exits) > 0 {
			c.reaps[0] = append(c.reaps[0], exits...)
		}
	}
	extra := map[int]func(){100: burst}
	const rounds = 3000
	for i := 101; i < rounds; i++ {
		extra[i] = drain
	}
	l := scoutsFinish(t, c, rounds, extra)
	per, _ := scoutLaunches(c.launches)
	total := 0
	for _, k := range per {
		total += k
	}
	require.Len(t, per, n, "every database scouted")
	assert.LessOrEqual(t, total, 2*n+boardPlaces+1, "scouts: the sweep plus the overflow's plus one per database a worker left")
	assert.Equal(t, 2, c.count("Databases"), "pg_database read for the start and the overflow")
	assert.True(t, l.sweep.empty(), "the sweep is over")
	assert.Empty(t, c.board, "the board is empty")
	assert.Equal(t, []string{"lantern_async launcher: the demand board overflowed; every database (1200) is queued for a scout"},
		l.Log.(*fakeLogger).lines, "the overflow is logged once")
}

// A database dropped while queued leaves the queue at its turn.
func TestLauncherSweepForgetsADroppedDatabase(t *testing.T) {
	c := newCluster()
	c.reconcileNeeded = true
	c.databases = []uint32{dbX, dbY}
	c.verdicts[scoutX] = DatabaseGone
	l, _ := runRounds(t, c, 1)
	assert.Equal(t, []launched{{scoutY, true}}, c.launches)
	assert.Equal(t, []uint32{dbX}, c.forgotDBs)
	assert.Empty(t, l.sweep.queued)
}

// A sweep's scout that ends without sweeping puts its database back in
// the queue (after its backoff); one that swept does not.
func TestLauncherSweepRequeuesAScoutThatDidNotSweep(t *testing.T) {
	clk := &clock{now: epoch}
	c := newCluster()
	c.overflow = true
	c.databases = []uint32{dbX, dbY}
	c.reaps = [][]Exit{nil, {{Key: scoutX}, {Key: scoutY, Clean: true}}}
	c.before = []func(){nil, nil, func() { clk.now = clk.now.Add(time.Second) }}
	l, _ := newLauncher(c, clk.Now)
	c.rounds = 3
	l.Run()
	assert.Equal(t, []launched{{scoutX, false}, {scoutY, false}, {scoutX, false}}, c.launches,
		"X again once its backoff is over")
	assert.Empty(t, c.board)
	assert.Equal(t, 1, c.count("Databases"))
	assert.Equal(t, time.Second, c.waits[1], "round 2 naps until X's backoff ends")
}

func TestSweepQueueFrontLooksAtEachOnceAndRotates(t *testing.T) {
	var q sweepQueue
	q.init()
	for _, db := range []uint32{1, 2, 3, 4} {
		q.add(db)
	}
	q.add(2) // already queued: keeps its place
	held := map[uint32]bool{1: true}
	skip := func(db uint32) bool { return held[db] }
	assert.Equal(t, []uint32{2, 3}, q.front(2, 10, skip))
	q.started(2)
	assert.Equal(t, []uint32{4, 3}, q.front(5, 10, skip), "each once, the held one skipped, the picked one rotated")
	assert.Equal(t, []uint32{4}, q.front(5, 1, func(uint32) bool { return false }), "look bounds the entries looked at")
	q.ended(2, false)
	assert.Contains(t, q.front(5, 10, skip), uint32(2), "a scout that did not sweep is queued again")
	q.remove(3)
	assert.NotContains(t, q.front(5, 10, skip), uint32(3))
}

// A sweep's scouts take only slots no other demand needs, never the last
// free one (unless there is only one), and no worker is retired for them.
func TestPlanRoundBackgroundScouts(t *testing.T) {
	bg := func(db uint32) Demand { return Demand{Key: Key{DB: db}, Background: true} }
	sweep := []Demand{bg(100), bg(101), bg(102), bg(103), bg(104)}
	tests := []struct {
		name     string
		demands  []Demand
		slots    []Slot
		capacity int
		launch   []Key
		retire   []int
	}{
		{"all but one free slot", sweep, nil, 4, []Key{{DB: 100}, {DB: 101}, {DB: 102}}, nil},
		{"a role's work first, then the sweep", append([]Demand{{Key: keyA, Hint: 1}}, sweep...), nil, 4,
			[]Key{keyA, {DB: 100}, {DB: 101}}, nil},
		{"the last free slot is the role's", append([]Demand{{Key: keyA, Hint: 1}}, sweep...),
			[]Slot{idleSlot(0, Key{DB: 7}), idleSlot(1, Key{DB: 8}), idleSlot(2, Key{DB: 9})}, 4, []Key{keyA}, nil},
		{"the only slot", sweep, nil, 1, []Key{{DB: 100}}, nil},
		{"idle workers with nothing noted give way, within the sweep's room", sweep,
			[]Slot{idleSlot(0, keyA), idleSlot(1, keyB), idleSlot(2, keyC), idleSlot(3, Key{DB: 9, Role: 10})}, 4, nil, []int{0, 1, 2}},
		{"a backlog in every slot: one of its workers leaves after its task", append([]Demand{{Key: keyA, Hint: 100}}, sweep[0]),
			[]Slot{busyRun(0, keyA), busyRun(1, keyA), busyRun(2, keyA), busyRun(3, keyA)}, 4, nil, []int{0}},
		{"a backlog in all but the free slot: it takes that one, and one of its workers leaves", append([]Demand{{Key: keyA, Hint: 100}}, sweep[0]),
			[]Slot{busyRun(0, keyA), busyRun(1, keyA), busyRun(2, keyA)}, 4, []Key{keyA}, []int{0}},
		{"no room left: three scouts hold the other slots", append([]Demand{{Key: keyA, Hint: 100}}, sweep[3:]...),
			[]Slot{idleSlot(0, Key{DB: 100}), idleSlot(1, Key{DB: 101}), idleSlot(2, Key{DB: 102})}, 4, []Key{keyA}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanRound(slices.Clone(tc.demands), tc.slots, tc.capacity)
			assert.Equal(t, tc.launch, plan.Launch)
			assert.Equal(t, tc.retire, plan.Retire)
		})
	}
}

// busyRun is a worker slot running a task, having finished one before.
func busyRun(index int, k Key) Slot {
	s := busySlot(index, k, int64(100+index))
	s.TasksRun = 1
	return s
}

// sweepWithWork runs a start sweep of n databases in which, before each
// round, every scout in a slot ends cleanly after noting its history, and
// after noting a pending task when its database has one (pending) that no
// worker has run yet; a worker ends after workRounds rounds, having run
// its task. It returns the launcher and the most history notes one round
// took (the inbox, loader/state/history.c, holds 512).
func sweepWithWork(t *testing.T, c *fakeCluster, n, rounds, workRounds int, pending func(db uint32) bool) (*Launcher, int) {
	t.Helper()
	c.boardCap = boardPlaces
	c.reconcileNeeded = true
	c.retention = time.Hour
	c.databases = manyDatabases(n)
	ran := map[uint32]bool{}
	age := map[int]int{}
	most := 0
	c.before = make([]func(), rounds)
	for i := 1; i < rounds; i++ {
		c.before[i] = func() {
			var exits []Exit
			for _, s := range c.slots {
				switch {
				case s.Scout():
					if pending(s.DB) && !ran[s.DB] {
						c.demand(Key{DB: s.DB, Role: 10}, 1)
					}
					c.historyNotes = append(c.historyNotes,
						HistoryNote{DB: s.DB, Set: true, Oldest: fixedNow().Add(-time.Minute)})
					exits = append(exits, Exit{Key: s.Key, Clean: true})
					c.settle(s.Key)
				case age[s.Index] < workRounds:
					age[s.Index]++
				default:
					ran[s.DB] = true
					exits = append(exits, Exit{Key: s.Key, Clean: true, TasksRun: 1})
					c.settle(s.Key)
				}
			}
			most = max(most, len(c.historyNotes))
			c.reaps = [][]Exit{exits}
		}
	}
	l, _ := newLauncher(c, fixedNow)
	c.rounds = rounds
	l.Run()
	return l, most
}

// A start sweep whose every scout notes its database's history: the notes
// between two rounds are at most one per slot, so the inbox never
// overflows, and no database is scouted twice (an overflow would queue
// every database swept so far again).
func TestLauncherSweepWhoseScoutsNoteHistoryScoutsEachOnce(t *testing.T) {
	const n = 1500
	c := newCluster()
	l, most := sweepWithWork(t, c, n, n, 0, func(uint32) bool { return false })
	per, _ := scoutLaunches(c.launches)
	require.Len(t, per, n, "every database scouted")
	for db, k := range per {
		require.Equal(t, 1, k, "scouts of database %d", db)
	}
	assert.LessOrEqual(t, most, c.capacity, "history notes taken in one round")
	assert.Equal(t, n, l.history.Len(), "a history entry per database")
	assert.Equal(t, 1, c.count("Databases"), "pg_database read once")
	assert.True(t, l.sweep.empty(), "the sweep is over")
}

// A start sweep in which every scout finds a pending task, whose worker
// runs for ten rounds: the sweep's scouts wait for the slots the workers
// need, so their notes never overflow the board, and each database gets
// its sweep's scout and one more after its worker ran a task (reap), no
// more.
func TestLauncherSweepFindingTasksEverywhereScoutsEachOnce(t *testing.T) {
	const n = 1500
	c := newCluster()
	l, _ := sweepWithWork(t, c, n, 20*n, 10, func(uint32) bool { return true })
	per, _ := scoutLaunches(c.launches)
	require.Len(t, per, n, "every database scouted")
	for db, k := range per {
		require.Equal(t, 2, k, "scouts of database %d: the sweep's, and the one after its worker", db)
	}
	assert.Equal(t, 1, c.count("Databases"), "pg_database read once: the board never overflowed")
	assert.True(t, l.sweep.empty(), "the sweep is over")
	assert.Empty(t, c.board, "every task ran")
}
