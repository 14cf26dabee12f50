package control

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fakeLogger struct{ lines []string }

func (l *fakeLogger) Logf(format string, args ...any) {
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// launched is one Launch call.
type launched struct {
	Key
	StartSweep bool
}

// fakeCluster is a Cluster with a small demand board and slot array, and
// per-round scripts. Scripts (reaps, reapErrs, dbErrs, launchOK,
// launchErrs) are consumed one entry per call; once empty, a call has its
// default result. before[i], when set, runs between rounds i and i+1 (at
// the end of the i-th Wait, before the next round reads the clock), to
// change the state between rounds; before[0] is never run.
type fakeCluster struct {
	historyNotes    []HistoryNote // returned by the next History, once
	historyOverflow bool          // returned by the next History, once
	retention       time.Duration
	databases       []uint32
	dbErrs          []error
	board           []Demand
	boardCap        int   // places on the board (0: no limit); a note beyond them overflows
	checked         []int // how many keys each Check asked about
	seq             uint64
	overflow        bool
	reconcileNeeded bool // stays true until MarkReconciled, as in shared memory
	verdicts        map[Key]Verdict
	checkErrs       []error
	checking        func() // when set, runs in each Check (time passing during the round)
	slots           []Slot
	nextSlot        int
	capacity        int
	reaps           [][]Exit
	reapErrs        []error
	launchOK        []bool // default true: a launch takes a slot
	launchErrs      []error
	before          []func()
	rounds          int // Wait returns true on this call

	calls      []string // every method, in call order
	notes      []Key
	forgotten  []Key
	forgotDBs  []uint32
	launches   []launched
	woken      []int
	retired    []int
	lost       []Exit
	waits      []time.Duration
	reconciled int
}

func newCluster() *fakeCluster {
	return &fakeCluster{capacity: 4, rounds: 1, verdicts: map[Key]Verdict{}}
}

func pop[T any](script *[]T, dflt T) T {
	if len(*script) == 0 {
		return dflt
	}
	v := (*script)[0]
	*script = (*script)[1:]
	return v
}

func (c *fakeCluster) record(call string) { c.calls = append(c.calls, call) }

// count is how many times a method was called.
func (c *fakeCluster) count(method string) int {
	n := 0
	for _, call := range c.calls {
		if call == method {
			n++
		}
	}
	return n
}

// demand puts an entry on the board as a submit would, due now.
func (c *fakeCluster) demand(k Key, hint int64) { c.demandAt(k, hint, time.Time{}) }

// demandAt puts an entry on the board as a submit with a run_after would:
// an entry already there is due at the earlier of the two (the zero time
// is now), as in demand.c.
func (c *fakeCluster) demandAt(k Key, hint int64, due time.Time) {
	for i := range c.board {
		if d := &c.board[i]; d.Key == k {
			d.Hint += hint
			if due.IsZero() || due.Before(d.Due) {
				d.Due = due
			}
			return
		}
	}
	if c.boardCap > 0 && len(c.board) >= c.boardCap {
		c.overflow = true // as demand.c does
		return
	}
	c.seq++
	c.board = append(c.board, Demand{Key: k, Seq: c.seq, Hint: hint, Due: due})
}

// settle removes an entry from the board, as a scout or worker that found
// nothing more does.
func (c *fakeCluster) settle(k Key) {
	c.board = slices.DeleteFunc(c.board, func(d Demand) bool { return d.Key == k })
}

func (c *fakeCluster) Databases() ([]uint32, error) {
	c.record("Databases")
	if err := pop(&c.dbErrs, nil); err != nil {
		return nil, err
	}
	return c.databases, nil
}

func (c *fakeCluster) Demands() []Demand {
	c.record("Demands")
	return slices.Clone(c.board)
}

func (c *fakeCluster) TakeOverflow() bool {
	c.record("TakeOverflow")
	o := c.overflow
	c.overflow = false
	return o
}

func (c *fakeCluster) Check(keys []Key) ([]Verdict, error) {
	c.record("Check")
	c.checked = append(c.checked, len(keys))
	if c.checking != nil {
		c.checking()
	}
	if err := pop(&c.checkErrs, nil); err != nil {
		return nil, err
	}
	verdicts := make([]Verdict, len(keys))
	for i, k := range keys {
		verdicts[i] = c.verdicts[k]
	}
	return verdicts, nil
}

func (c *fakeCluster) Note(k Key) {
	c.record("Note")
	c.notes = append(c.notes, k)
	c.demand(k, 0)
}

func (c *fakeCluster) Forget(k Key) {
	c.record("Forget")
	c.forgotten = append(c.forgotten, k)
	c.settle(k)
}

func (c *fakeCluster) ForgetDatabase(db uint32) {
	c.record("ForgetDatabase")
	c.forgotDBs = append(c.forgotDBs, db)
	c.board = slices.DeleteFunc(c.board, func(d Demand) bool { return d.DB == db })
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

func (c *fakeCluster) Slots() []Slot {
	c.record("Slots")
	return slices.Clone(c.slots)
}

// Launch records the call; a process that starts takes a slot, idle.
func (c *fakeCluster) Launch(k Key, startSweep bool) (bool, error) {
	c.record("Launch")
	c.launches = append(c.launches, launched{Key: k, StartSweep: startSweep})
	ok, err := pop(&c.launchOK, true), pop(&c.launchErrs, nil)
	if ok && err == nil {
		c.slots = append(c.slots, Slot{Index: c.nextSlot, Key: k})
		c.nextSlot++
	}
	return ok, err
}

func (c *fakeCluster) Wake(slot int) {
	c.record("Wake")
	c.woken = append(c.woken, slot)
}

func (c *fakeCluster) Retire(slot int) {
	c.record("Retire")
	c.retired = append(c.retired, slot)
}

// Reap runs the round's script, then frees one slot of each exit's key.
func (c *fakeCluster) Reap() ([]Exit, error) {
	c.record("Reap")
	if err := pop(&c.reapErrs, nil); err != nil {
		return nil, err
	}
	exits := pop(&c.reaps, nil)
	for _, e := range exits {
		if i := slices.IndexFunc(c.slots, func(s Slot) bool { return s.Key == e.Key }); i >= 0 {
			c.slots = slices.Delete(c.slots, i, i+1)
		}
	}
	return exits, nil
}

func (c *fakeCluster) Lost(e Exit) {
	c.record("Lost")
	c.lost = append(c.lost, e)
}

func (c *fakeCluster) History() ([]HistoryNote, bool) {
	notes, overflow := c.historyNotes, c.historyOverflow
	c.historyNotes, c.historyOverflow = nil, false
	return notes, overflow
}

func (c *fakeCluster) HistoryRetention() time.Duration { return c.retention }

func (c *fakeCluster) Wait(timeout time.Duration) bool {
	c.record("Wait")
	c.waits = append(c.waits, timeout)
	if len(c.waits) >= c.rounds {
		return true
	}
	if round := len(c.waits); round < len(c.before) && c.before[round] != nil {
		c.before[round]()
	}
	return false
}

func (c *fakeCluster) Capacity() int {
	c.record("Capacity")
	return c.capacity
}

const naptime = 7 * time.Second

// tasksTable is the OID of the lantern.tasks a lost task came from.
const tasksTable uint32 = 16384

func fixedNow() time.Time { return epoch }

// clock is a settable time for a launcher.
type clock struct{ now time.Time }

func (k *clock) Now() time.Time { return k.now }

func newLauncher(c *fakeCluster, now func() time.Time) (*Launcher, *fakeLogger) {
	log := &fakeLogger{}
	return &Launcher{Cluster: c, Log: log, Naptime: naptime,
		Backoff: Backoff{Min: time.Second, Max: time.Minute}, Now: now}, log
}

// runRounds runs a new launcher over c for the given number of rounds.
func runRounds(t *testing.T, c *fakeCluster, rounds int) (*Launcher, *fakeLogger) {
	t.Helper()
	l, log := newLauncher(c, fixedNow)
	c.rounds = rounds
	l.Run()
	require.Len(t, c.waits, rounds, "rounds run")
	return l, log
}

// keysOf lists the keys launched.
func keysOf(ls []launched) []Key {
	var keys []Key
	for _, l := range ls {
		keys = append(keys, l.Key)
	}
	return keys
}
