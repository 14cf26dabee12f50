package control

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlanRoundRetires(t *testing.T) {
	tests := []struct {
		name     string
		demands  []Demand
		slots    []Slot
		capacity int
		launch   []Key
		retire   []int
	}{
		{name: "a free slot is left: nobody gives way",
			demands: []Demand{demand(keyA, 1, 5), demand(keyC, 2, 1)},
			slots:   []Slot{busySlot(0, keyA, 1), busySlot(1, keyA, 2)}, capacity: 3,
			launch: []Key{keyC}},
		{name: "a key with demand and no slot takes one from the busiest key",
			demands: []Demand{demand(keyA, 1, 9), demand(keyB, 2, 9), demand(keyC, 3, 1)},
			slots: []Slot{busySlot(0, keyB, 1), busySlot(1, keyA, 2), busySlot(2, keyA, 3), busySlot(3, keyA, 4),
				busySlot(4, keyB, 5)},
			capacity: 5, retire: []int{1}},
		{name: "an idle worker of the busiest key goes first",
			demands:  []Demand{demand(keyA, 1, 9), demand(keyC, 2, 1)},
			slots:    []Slot{busySlot(0, keyA, 1), idleSlot(1, keyA), busySlot(2, keyA, 3)},
			capacity: 3, retire: []int{1}},
		{name: "a key's only worker gives way once it has run a task",
			demands: []Demand{demand(keyA, 1, 9), demand(keyC, 2, 1)},
			slots:   []Slot{ran(busySlot(0, keyA, 1), 1)}, capacity: 1, retire: []int{0}},
		{name: "a key's only idle worker that has run a task gives way",
			demands: []Demand{demand(keyA, 1, 0), demand(keyC, 2, 1)},
			slots:   []Slot{ran(idleSlot(0, keyA), 3)}, capacity: 1, retire: []int{0}},
		{name: "a key's only worker keeps its slot until it has run a task",
			demands: []Demand{demand(keyA, 1, 9), demand(keyC, 2, 1)},
			slots:   []Slot{busySlot(0, keyA, 1)}, capacity: 1},
		{name: "every key's last worker has run nothing",
			demands: []Demand{demand(keyA, 1, 9), demand(keyB, 2, 9), demand(keyC, 3, 1)},
			slots:   []Slot{busySlot(0, keyA, 1), busySlot(1, keyB, 2)}, capacity: 2},
		{name: "a key with two fresh workers gives one, not its last",
			demands: []Demand{demand(keyA, 1, 9), demand(keyC, 2, 1), demand(keyD, 3, 1)},
			slots:   []Slot{busySlot(0, keyA, 1), busySlot(1, keyA, 2)}, capacity: 2, retire: []int{0}},
		{name: "a scout is never retired",
			demands: []Demand{demand(scoutX, 1, 0), demand(keyC, 2, 1)},
			slots:   []Slot{ran(idleSlot(0, scoutX), 5)}, capacity: 1},
		{name: "a scout with no demand left is not retired as idle either",
			demands: []Demand{demand(keyC, 1, 1)},
			slots:   []Slot{idleSlot(0, scoutX)}, capacity: 1},
		{name: "a slot already retiring counts as promised",
			demands: []Demand{demand(keyA, 1, 9), demand(keyC, 2, 1)},
			slots:   []Slot{retiring(busySlot(0, keyA, 1)), busySlot(1, keyA, 2), busySlot(2, keyA, 3)}, capacity: 3},
		{name: "one promised slot serves one key only",
			demands:  []Demand{demand(keyA, 1, 9), demand(keyB, 2, 1), demand(keyC, 3, 1)},
			slots:    []Slot{retiring(busySlot(0, keyA, 1)), busySlot(1, keyA, 2), busySlot(2, keyA, 3)},
			capacity: 3, retire: []int{1}},
		{name: "a slot already retiring is not retired again",
			demands:  []Demand{demand(keyA, 1, 9), demand(keyC, 2, 1), demand(keyD, 3, 1)},
			slots:    []Slot{retiring(idleSlot(0, keyA)), busySlot(1, keyA, 2), busySlot(2, keyA, 3)},
			capacity: 3, retire: []int{1}},
		{name: "a retiring idle worker of a key with no demand is not asked again",
			demands: []Demand{demand(keyC, 1, 2)},
			slots:   []Slot{retiring(idleSlot(0, keyB)), busySlot(1, keyA, 1)}, capacity: 2},
		{name: "a slot already retiring covers unmet demand of a key that has a worker",
			demands: []Demand{demand(keyA, 1, 1)},
			slots:   []Slot{retiring(busySlot(0, keyA, 1)), busySlot(1, keyA, 2), idleSlot(2, keyB)}, capacity: 3},
		{name: "keys that hold a slot do not take one",
			demands: []Demand{demand(keyA, 1, 5), demand(keyB, 2, 5)},
			slots:   []Slot{busySlot(0, keyA, 1), busySlot(1, keyB, 2), busySlot(2, keyB, 3)}, capacity: 3},
		{name: "an idle worker of a key with no demand gives way",
			demands: []Demand{demand(keyC, 1, 1)},
			slots:   []Slot{busySlot(0, keyA, 1), idleSlot(1, keyB)}, capacity: 2, retire: []int{1}},
		{name: "idle workers of keys with no demand keep their slots while one is free",
			demands: []Demand{demand(keyA, 1, 1)},
			slots:   []Slot{idleSlot(0, keyB), idleSlot(1, keyC), idleSlot(2, keyD)}, capacity: 4,
			launch: []Key{keyA}},
		{name: "idle workers of keys with no demand give way only to unmet demand",
			demands: []Demand{demand(keyA, 1, 3)},
			slots:   []Slot{idleSlot(0, keyB), idleSlot(1, keyC), idleSlot(2, keyD)}, capacity: 5,
			launch: []Key{keyA, keyA}, retire: []int{0}},
		{name: "as many idle workers give way as there is unmet demand",
			demands:  []Demand{demand(keyC, 1, 2)},
			slots:    []Slot{busySlot(0, keyA, 1), idleSlot(1, keyB), idleSlot(2, keyD), idleSlot(3, keyB)},
			capacity: 4, retire: []int{1, 2}},
		{name: "the backlog of a key that has workers is unmet demand too",
			demands: []Demand{demand(keyA, 1, 5)},
			slots:   []Slot{busySlot(0, keyA, 1), idleSlot(1, keyB)}, capacity: 2, retire: []int{1}},
		{name: "an idle worker of a key with demand stays (it is woken)",
			demands: []Demand{demand(keyA, 1, 1), demand(keyC, 2, 1)},
			slots:   []Slot{idleSlot(0, keyA)}, capacity: 1},
		{name: "busy workers of keys with no demand are not retired for unmet demand",
			demands: []Demand{demand(keyC, 1, 1)},
			slots:   []Slot{busySlot(0, keyB, 1), busySlot(1, keyD, 2)}, capacity: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanRound(tc.demands, tc.slots, tc.capacity)
			assert.Equal(t, tc.launch, plan.Launch, "launch")
			assert.Equal(t, tc.retire, plan.Retire, "retire")
		})
	}
}

// Database X keeps every slot busy with a backlog; one task arrives in Y:
// X gives one slot (the worker leaves after its task), not more.
func TestPlanRoundRetiresForAnotherDatabase(t *testing.T) {
	backlog := []Demand{demand(keyA, 1, 100), demand(keyC, 2, 1)}
	tests := []struct {
		name    string
		demands []Demand
		slots   []Slot
		retire  []int
	}{
		{name: "all busy", demands: backlog,
			slots:  []Slot{busySlot(0, keyA, 1), busySlot(1, keyA, 2), busySlot(2, keyA, 3)},
			retire: []int{0}},
		{name: "one idle", demands: backlog,
			slots:  []Slot{busySlot(0, keyA, 1), busySlot(1, keyA, 2), idleSlot(2, keyA)},
			retire: []int{2}},
		{name: "from the busiest of X's roles",
			demands: []Demand{demand(keyA, 1, 100), demand(keyB, 2, 100), demand(keyC, 3, 1)},
			slots:   []Slot{ran(busySlot(0, keyB, 1), 4), busySlot(1, keyA, 2), busySlot(2, keyA, 3)},
			retire:  []int{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			demands := tc.demands
			plan := PlanRound(demands, tc.slots, 3)
			assert.Empty(t, plan.Launch)
			assert.Equal(t, tc.retire, plan.Retire)

			// Next round: that worker is on its way out; nothing more is asked.
			for i := range tc.slots {
				if tc.slots[i].Index == tc.retire[0] {
					tc.slots[i].Retiring = true
				}
			}
			plan = PlanRound(demands, tc.slots, 3)
			assert.Empty(t, plan.Retire, "the retiring slot is promised to Y")

			// Once it left, Y's worker is launched into its slot.
			var left []Slot
			for _, s := range tc.slots {
				if !s.Retiring {
					left = append(left, s)
				}
			}
			plan = PlanRound(demands, left, 3)
			assert.Equal(t, []Key{keyC}, plan.Launch)
			assert.Empty(t, plan.Retire)
		})
	}
}

func TestPlanRoundRetiresOneSlotPerKeyWithout(t *testing.T) {
	slots := []Slot{busySlot(0, keyA, 1), idleSlot(1, keyA), busySlot(2, keyA, 3), busySlot(3, keyA, 4)}
	demands := []Demand{demand(keyA, 1, 100), demand(keyC, 2, 1), demand(keyD, 3, 1), demand(scoutY, 4, 0)}
	plan := PlanRound(demands, slots, 4)
	require.Len(t, plan.Retire, 3, "one for each of C, D and Y's scout")
	assert.Equal(t, 1, plan.Retire[0], "the idle worker first")
	assert.ElementsMatch(t, []int{0, 1, 2}, plan.Retire[:3], "distinct slots, and A keeps one")
}

// Two keys sharing one slot alternate task by task: the worker that has
// run a task gives way, the fresh one does not.
func TestPlanRoundKeysSharingOneSlotTakeTurns(t *testing.T) {
	demands := []Demand{demand(keyA, 1, 50), demand(keyC, 2, 50)}

	plan := PlanRound(demands, []Slot{busySlot(0, keyA, 1)}, 1)
	assert.Empty(t, plan.Retire, "A's worker has not finished a task yet")

	plan = PlanRound(demands, []Slot{ran(busySlot(0, keyA, 2), 1)}, 1)
	assert.Equal(t, []int{0}, plan.Retire, "A's worker finished one: C's turn")

	plan = PlanRound(demands, []Slot{retiring(ran(busySlot(0, keyA, 2), 1))}, 1)
	assert.Empty(t, plan.Retire, "already on its way out")
	assert.Empty(t, plan.Launch, "no slot free yet")

	plan = PlanRound(demands, []Slot{busySlot(0, keyC, 3)}, 1)
	assert.Empty(t, plan.Retire, "C's fresh worker keeps the slot for one task")

	plan = PlanRound(demands, []Slot{ran(busySlot(0, keyC, 3), 1)}, 1)
	assert.Equal(t, []int{0}, plan.Retire, "then it is A's turn again")
}

// The turn must go to the key the slot was retired for once it is free:
// A was served (its worker just left), C never was.
func TestPlanRoundGivesTheFreedSlotToTheKeyItWasRetiredFor(t *testing.T) {
	a := demand(keyA, 1, 50)
	a.Served = 1
	demands := []Demand{a, demand(keyC, 2, 50)}
	plan := PlanRound(demands, nil, 1) // A's retired worker has just left
	assert.Equal(t, []Key{keyC}, plan.Launch)
}

// A retiring slot is promised to one key without a slot; idle workers of
// keys with no demand should give way only to the demand still unmet.
func TestPlanRoundDoesNotRetireForDemandAlreadyPromised(t *testing.T) {
	slots := []Slot{retiring(busySlot(0, keyA, 1)), idleSlot(1, keyB)}
	plan := PlanRound([]Demand{demand(keyC, 1, 1)}, slots, 2)
	assert.Empty(t, plan.Retire)
}

// One key without a slot should cost one retirement, not a chain: a key
// whose worker was just asked to leave still has it running.
func TestPlanRoundOneNewcomerRetiresOneWorker(t *testing.T) {
	slots := []Slot{ran(busySlot(0, keyA, 1), 1), ran(busySlot(1, keyB, 2), 1)}
	plan := PlanRound([]Demand{demand(keyC, 1, 1), demand(keyA, 2, 5), demand(keyB, 3, 5)}, slots, 2)
	assert.Len(t, plan.Retire, 1)
}

// A newcomer takes the slot of an idle worker whose key has nothing noted
// before a busy worker of the busiest key: it is free at once.
func TestPlanRoundTakesAnUnneededIdleWorkerFirst(t *testing.T) {
	slots := []Slot{busySlot(0, keyA, 1), busySlot(1, keyA, 2), busySlot(2, keyA, 3), ran(idleSlot(3, keyB), 1)}
	plan := PlanRound([]Demand{demand(keyC, 1, 1)}, slots, 4)
	assert.Equal(t, []int{3}, plan.Retire, "B's idle worker, not one of A's busy ones")
}
