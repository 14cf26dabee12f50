package control

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// More keys: a second role of database Y, and the scouts of X and Y.
var (
	keyD   = Key{DB: dbY, Role: 40}
	scoutX = Key{DB: dbX}
	scoutY = Key{DB: dbY}
)

// demand is a board entry; seq is its age (lower is older).
func demand(k Key, seq uint64, hint int64) Demand { return Demand{Key: k, Seq: seq, Hint: hint} }

// idleSlot is a worker (or a sweeping scout) between tasks.
func idleSlot(index int, k Key) Slot { return Slot{Index: index, Key: k} }

// busySlot is a worker running task job.
func busySlot(index int, k Key, job int64) Slot { return Slot{Index: index, Key: k, JobID: job} }

// ran sets how many tasks a slot's worker has finished.
func ran(s Slot, tasks int64) Slot {
	s.TasksRun = tasks
	return s
}

// retiring marks a slot asked to give its place up.
func retiring(s Slot) Slot {
	s.Retiring = true
	return s
}

func TestPlanRoundLaunches(t *testing.T) {
	tests := []struct {
		name     string
		demands  []Demand
		slots    []Slot
		capacity int
		launch   []Key
	}{
		{name: "nothing to do", capacity: 4},
		{name: "no capacity", demands: []Demand{demand(keyA, 1, 5)}, capacity: 0},
		{name: "capacity respected", demands: []Demand{demand(keyA, 1, 10)}, capacity: 3,
			launch: []Key{keyA, keyA, keyA}},
		{name: "no more than the hint", demands: []Demand{demand(keyA, 1, 2)}, capacity: 8,
			launch: []Key{keyA, keyA}},
		{name: "a role with hint 0 still gets one", demands: []Demand{demand(keyA, 1, 0)}, capacity: 8,
			launch: []Key{keyA}},
		{name: "a scout is one process whatever its hint", demands: []Demand{demand(scoutX, 1, 5)}, capacity: 8,
			launch: []Key{scoutX}},
		{name: "a scout already sweeping is not launched again",
			demands: []Demand{demand(scoutX, 1, 0)}, slots: []Slot{idleSlot(0, scoutX)}, capacity: 8},
		{name: "idle workers count against the demand",
			demands: []Demand{demand(keyA, 1, 3)}, slots: []Slot{idleSlot(0, keyA), idleSlot(1, keyA)}, capacity: 10,
			launch: []Key{keyA}},
		{name: "demand covered by idle workers",
			demands: []Demand{demand(keyA, 1, 2)}, slots: []Slot{idleSlot(0, keyA), idleSlot(1, keyA), idleSlot(2, keyA)},
			capacity: 10},
		{name: "busy workers do not count against the demand",
			demands: []Demand{demand(keyA, 1, 3)}, slots: []Slot{busySlot(0, keyA, 5), busySlot(1, keyA, 6)}, capacity: 10,
			launch: []Key{keyA, keyA, keyA}},
		{name: "an idle worker that is retiring does not count",
			demands: []Demand{demand(keyA, 1, 1)}, slots: []Slot{retiring(idleSlot(0, keyA))}, capacity: 4,
			launch: []Key{keyA}},
		{name: "idle workers of another role do not count",
			demands: []Demand{demand(keyA, 1, 1)}, slots: []Slot{idleSlot(0, keyB)}, capacity: 4,
			launch: []Key{keyA}},
		{name: "an idle worker of the same role in another database does not count",
			demands: []Demand{demand(keyA, 1, 1)}, slots: []Slot{idleSlot(0, Key{DB: dbY, Role: keyA.Role})}, capacity: 4,
			launch: []Key{keyA}},
		{name: "every slot counts against capacity",
			demands: []Demand{demand(keyA, 1, 10)}, slots: []Slot{busySlot(0, keyB, 7), idleSlot(1, keyC), idleSlot(2, scoutY)},
			capacity: 5, launch: []Key{keyA, keyA}},
		{name: "more slots than capacity",
			demands: []Demand{demand(keyA, 1, 10)}, slots: []Slot{busySlot(0, keyB, 1), busySlot(1, keyB, 2), busySlot(2, keyC, 3)},
			capacity: 2},
		{name: "one per key per pass, oldest first",
			demands: []Demand{demand(keyA, 1, 3), demand(keyB, 2, 3)}, capacity: 5,
			launch: []Key{keyA, keyB, keyA, keyB, keyA}},
		{name: "one per key per pass until the demands run dry",
			demands: []Demand{demand(keyA, 1, 10), demand(keyB, 2, 2), demand(scoutX, 3, 0)}, capacity: 10,
			launch: []Key{keyA, keyB, scoutX, keyA, keyB, keyA, keyA, keyA, keyA, keyA}},
		{name: "one per key per pass across databases",
			demands: []Demand{demand(keyA, 1, 5), demand(keyC, 2, 5)}, capacity: 4,
			launch: []Key{keyA, keyC, keyA, keyC}},
		{name: "the database holding fewest slots first",
			demands:  []Demand{demand(keyA, 1, 5), demand(keyC, 2, 5)},
			slots:    []Slot{busySlot(0, keyB, 1), busySlot(1, keyB, 2)},
			capacity: 3, launch: []Key{keyC}},
		{name: "within a database, the key holding fewest slots first",
			demands:  []Demand{demand(keyA, 1, 5), demand(keyB, 2, 5)},
			slots:    []Slot{busySlot(0, keyA, 1)},
			capacity: 2, launch: []Key{keyB}},
		{name: "the database count comes before the key count",
			// keyD holds no slot and is older, but its database holds two;
			// keyB holds one, and so does its database.
			demands:  []Demand{demand(keyD, 1, 5), demand(keyB, 2, 5)},
			slots:    []Slot{busySlot(0, keyB, 1), busySlot(1, keyC, 2), busySlot(2, keyC, 3)},
			capacity: 4, launch: []Key{keyB}},
		{name: "a retiring slot does not count for fairness",
			demands:  []Demand{demand(keyA, 1, 5), demand(keyD, 2, 5)},
			slots:    []Slot{retiring(busySlot(0, keyC, 1)), busySlot(1, keyB, 2)},
			capacity: 3, launch: []Key{keyD}},
		{name: "among equals, the oldest demand first",
			demands: []Demand{demand(keyC, 1, 5), demand(keyA, 2, 5)}, capacity: 1,
			launch: []Key{keyC}},
		{name: "an idle worker's slot still counts for fairness",
			// Y's idle worker covers keyC's demand; X holds no slot and goes first.
			demands:  []Demand{demand(keyC, 1, 3), demand(keyA, 2, 2)},
			slots:    []Slot{idleSlot(0, keyC)},
			capacity: 4, launch: []Key{keyA, keyC, keyA}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanRound(tc.demands, tc.slots, tc.capacity)
			assert.Equal(t, tc.launch, plan.Launch, "launch")
		})
	}
}

// Database fairness is meant to hold within a round too: once a database
// has been given a slot, a database that holds none should come first.
func TestPlanRoundServesEachDatabaseBeforeASecondKeyOfOne(t *testing.T) {
	plan := PlanRound([]Demand{demand(keyA, 1, 1), demand(keyB, 2, 1), demand(keyC, 3, 1)}, nil, 2)
	assert.Equal(t, []Key{keyA, keyC}, plan.Launch)
}

func TestPlanRoundNeverLaunchesBeyondDemandOrCapacity(t *testing.T) {
	demands := []Demand{demand(keyA, 1, 3), demand(keyB, 2, 0), demand(keyC, 3, 2), demand(scoutY, 4, 9)}
	want := map[Key]int{keyA: 3, keyB: 1, keyC: 2, scoutY: 1} // 7 in all
	for capacity := 0; capacity <= 9; capacity++ {
		plan := PlanRound(demands, nil, capacity)
		assert.Len(t, plan.Launch, min(capacity, 7), "capacity %d", capacity)
		got := map[Key]int{}
		for _, k := range plan.Launch {
			got[k]++
		}
		for k, n := range got {
			assert.LessOrEqual(t, n, want[k], "capacity %d: launches of %v", capacity, k)
		}
		if capacity >= 4 {
			assert.Len(t, got, 4, "capacity %d: every key gets one", capacity)
		}
	}
}

func TestPlanRoundWakesIdleWorkersWhoseKeyHasDemand(t *testing.T) {
	tests := []struct {
		name    string
		demands []Demand
		slots   []Slot
		wake    []int
	}{
		{name: "idle worker of a key with demand",
			demands: []Demand{demand(keyA, 1, 1)}, slots: []Slot{idleSlot(3, keyA)}, wake: []int{3}},
		{name: "every idle worker of that key",
			demands: []Demand{demand(keyA, 1, 1)}, slots: []Slot{idleSlot(3, keyA), idleSlot(5, keyA)}, wake: []int{3, 5}},
		{name: "busy worker",
			demands: []Demand{demand(keyA, 1, 1)}, slots: []Slot{busySlot(3, keyA, 9)}},
		{name: "idle worker of a key without demand",
			demands: []Demand{demand(keyA, 1, 1)}, slots: []Slot{idleSlot(3, keyB), idleSlot(4, keyC)}},
		{name: "a sweeping scout is never woken",
			demands: []Demand{demand(scoutX, 1, 0)}, slots: []Slot{idleSlot(3, scoutX)}},
		{name: "an idle worker asked to retire is woken too (it leaves)",
			demands: []Demand{demand(keyA, 1, 1)}, slots: []Slot{retiring(idleSlot(3, keyA))}, wake: []int{3}},
		{name: "no demand at all",
			slots: []Slot{idleSlot(3, keyA)}},
		{name: "mixed",
			demands: []Demand{demand(keyC, 1, 1), demand(keyA, 2, 1), demand(scoutX, 3, 0)},
			slots: []Slot{idleSlot(0, keyA), idleSlot(1, keyB), busySlot(2, keyA, 9), idleSlot(3, scoutX),
				idleSlot(4, keyC), busySlot(5, keyC, 8)},
			wake: []int{0, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanRound(tc.demands, tc.slots, 10)
			assert.Equal(t, tc.wake, plan.Wake)
		})
	}
}

func TestPlanRoundWakesEvenWithoutFreeSlots(t *testing.T) {
	slots := []Slot{idleSlot(0, keyA), busySlot(1, keyB, 4)}
	plan := PlanRound([]Demand{demand(keyA, 1, 3), demand(keyB, 2, 1)}, slots, 2)
	assert.Empty(t, plan.Launch)
	assert.Equal(t, []int{0}, plan.Wake)
}
