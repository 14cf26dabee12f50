package control

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func lingering(s Slot) Slot {
	s.Lingering = true
	return s
}

// A worker idle between two tasks of its role keeps its slot for the idle
// grace against a backlog that has workers already; a key with no process
// takes it at once, as before.
func TestPlanRoundLingeringIdleWorker(t *testing.T) {
	backlog := []Demand{demand(keyA, 1, 1000)}
	slots := []Slot{busySlot(0, keyA, 1), lingering(ran(idleSlot(1, keyB), 1))}
	assert.Empty(t, PlanRound(backlog, slots, 2).Retire, "B's worker lingers against A's backlog")

	slots[1].Lingering = false
	assert.Equal(t, []int{1}, PlanRound(backlog, slots, 2).Retire, "after the grace it gives way")

	newcomer := []Demand{demand(keyA, 1, 1000), demand(keyC, 2, 1)}
	slots = []Slot{ran(busySlot(0, keyA, 1), 1), lingering(ran(idleSlot(1, keyB), 1))}
	assert.Equal(t, []int{1}, PlanRound(newcomer, slots, 2).Retire, "C, with no process, takes it at once")
}

// The launcher marks an idle worker lingering from when it first sees it
// idle, wakes when the grace ends, and then lets it give way to the
// backlog; a worker that has run nothing yet does not linger.
func TestLauncherLetsAnIdleWorkerLinger(t *testing.T) {
	clk := &clock{now: epoch}
	c := newCluster()
	c.capacity = 2
	c.demand(keyA, 1000)
	c.slots = []Slot{busySlot(0, keyA, 1), ran(idleSlot(1, keyB), 1)}
	c.nextSlot = 2
	c.before = []func(){nil, func() { clk.now = clk.now.Add(defaultIdleGrace) }}
	l, _ := newLauncher(c, clk.Now)
	c.rounds = 2
	l.Run()

	require.NotEmpty(t, c.waits)
	assert.Equal(t, defaultIdleGrace, c.waits[0], "woken when B's worker's grace ends")
	assert.Equal(t, []int{1}, c.retired, "then B's idle worker gives way to A's backlog, not before")
}

func TestMarkLingering(t *testing.T) {
	l := &Launcher{IdleGrace: time.Second, now: epoch}
	slots := []Slot{ran(idleSlot(0, keyB), 1), idleSlot(1, keyC), busySlot(2, keyA, 7)}
	l.markLingering(slots)
	assert.True(t, slots[0].Lingering, "idle after a task")
	assert.False(t, slots[1].Lingering, "has run nothing: nothing to keep warm")
	assert.False(t, slots[2].Lingering, "busy")
	assert.Equal(t, epoch.Add(time.Second), l.lingerEnd)

	l.now = epoch.Add(time.Second)
	slots = []Slot{ran(idleSlot(0, keyB), 1)}
	l.markLingering(slots)
	assert.False(t, slots[0].Lingering, "the grace is over")
	assert.True(t, l.lingerEnd.IsZero())

	slots = []Slot{ran(idleSlot(0, keyB), 2)}
	l.markLingering(slots)
	assert.True(t, slots[0].Lingering, "a new task run: a new idle spell")
}
