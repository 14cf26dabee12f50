package control

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// roundSeen is what the launcher had done by the end of a round.
type roundSeen struct {
	Launched []Key
	Woken    []int
	Retired  []int
}

// A demand not due yet (a run_after, a retry's time) is held back whole:
// no launch, no wake of its idle worker, no retirement of another key's
// worker on its behalf, no catalog look; the launcher naps until its due
// and serves it, as any demand, in the first round at or after it.
func TestLauncherHoldsBackADemandUntilItIsDue(t *testing.T) {
	const later = 5 * time.Second
	due := epoch.Add(later)
	tests := []struct {
		name     string
		capacity int
		slots    []Slot
		atDue    roundSeen
	}{
		{name: "a launch", capacity: 4, atDue: roundSeen{Launched: []Key{keyA}}},
		{name: "a wake of its idle worker", capacity: 4, slots: []Slot{idleSlot(0, keyA)},
			atDue: roundSeen{Woken: []int{0}}},
		{name: "a retirement of another key's worker", capacity: 1, slots: []Slot{ran(busySlot(0, keyC, 7), 1)},
			atDue: roundSeen{Retired: []int{0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: epoch}
			c := newCluster()
			c.capacity = tc.capacity
			c.slots = tc.slots
			c.nextSlot = len(tc.slots)
			c.demandAt(keyA, 1, due)
			var seen []roundSeen
			look := func() {
				seen = append(seen, roundSeen{keysOf(c.launches), slices.Clone(c.woken), slices.Clone(c.retired)})
			}
			c.before = []func(){
				nil,
				func() { look(); clk.now = due.Add(-time.Microsecond) },
				func() { look(); clk.now = due },
			}
			l, _ := newLauncher(c, clk.Now)
			c.rounds = 3
			l.Run()
			look()

			assert.Equal(t, []roundSeen{{}, {}, tc.atDue}, seen, "held back until the round at its due")
			assert.Equal(t, []time.Duration{later, time.Millisecond, naptime}, c.waits,
				"the nap ends at its due (1 ms at least), then the naptime")
			assert.Equal(t, []int{0, 0, 1}, c.checked, "held back, its database and role are not looked up")
		})
	}
}

// The nap ends when the earliest demand held back falls due, within the
// usual bounds (Naptime at most, 1 ms at least), or sooner when a backoff
// ends first: no polling tick.
func TestLauncherNapsUntilTheEarliestDemandIsDue(t *testing.T) {
	tests := []struct {
		name     string
		dueA     time.Duration // after the round's instant; 0: now
		dueC     time.Duration
		backoff  bool // keyB's worker just died: held back for a second
		nap      time.Duration
		launched []Key
	}{
		{name: "its due", dueA: 5 * time.Second, nap: 5 * time.Second, launched: []Key{keyC}},
		{name: "the earliest of two", dueA: 5 * time.Second, dueC: 2 * time.Second, nap: 2 * time.Second},
		{name: "to the microsecond", dueA: 1500 * time.Microsecond, nap: 1500 * time.Microsecond, launched: []Key{keyC}},
		{name: "1 ms at least", dueA: 100 * time.Microsecond, nap: time.Millisecond, launched: []Key{keyC}},
		{name: "Naptime at most", dueA: time.Hour, nap: naptime, launched: []Key{keyC}},
		{name: "a backoff that ends sooner", dueA: 5 * time.Second, backoff: true, nap: time.Second, launched: []Key{keyC}},
		{name: "a due before the backoff's end", dueA: 500 * time.Millisecond, backoff: true,
			nap: 500 * time.Millisecond, launched: []Key{keyC}},
		{name: "a due in the past is now", dueA: -time.Second, nap: naptime, launched: []Key{keyA, keyC}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			at := func(d time.Duration) time.Time {
				if d == 0 {
					return time.Time{}
				}
				return epoch.Add(d)
			}
			c.demandAt(keyA, 1, at(tc.dueA))
			c.demandAt(keyC, 1, at(tc.dueC))
			if tc.backoff {
				c.reaps = [][]Exit{{{Key: keyB}}}
			}
			runRounds(t, c, 1)
			assert.Equal(t, []time.Duration{tc.nap}, c.waits)
			assert.Equal(t, tc.launched, keysOf(c.launches))
		})
	}
}

// A demand due now is served as if the later one of another key were not
// on the board: it is not put after it (oldest first), and the later one
// takes no slot from a busy worker.
func TestLauncherServesADueDemandBeforeALaterOne(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		slots    []Slot
	}{
		{name: "the last free slot", capacity: 1},
		{name: "a slot free, another busy", capacity: 2, slots: []Slot{ran(busySlot(0, keyB, 7), 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.capacity = tc.capacity
			c.slots = tc.slots
			c.nextSlot = len(tc.slots)
			c.demandAt(keyA, 1, epoch.Add(time.Hour)) // noted first
			c.demand(keyC, 1)

			runRounds(t, c, 1)
			assert.Equal(t, []Key{keyC}, keysOf(c.launches))
			assert.Empty(t, c.retired, "no worker gives its slot up for work not due")
		})
	}
}
