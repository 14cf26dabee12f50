package control

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func idleAt(index int, roleID uint32) Slot { return Slot{Index: index, RoleID: roleID} }

func TestPlanWakesIdleWorkersOfRolesWithTasks(t *testing.T) {
	plan := PlanRound([]RoleQueue{queue("a", roleA, 1)},
		[]Slot{idleAt(0, roleA), idleAt(1, roleB), {Index: 2, RoleID: roleA, JobID: 9}}, 4)
	assert.Empty(t, plan.Launch, "the idle worker of role a takes the task")
	assert.Equal(t, []int{0}, plan.Wake)
	assert.Empty(t, plan.Retire, "a free slot is left: nobody needs to give way")
}

func TestPlanRetiresIdleWorkersWhenSlotsAreNeeded(t *testing.T) {
	slots := []Slot{idleAt(0, roleB), idleAt(1, roleC), {Index: 2, RoleID: roleB, JobID: 4}}
	plan := PlanRound([]RoleQueue{queue("a", roleA, 1)}, slots, 3)
	assert.Empty(t, plan.Launch, "no slot is free")
	assert.Equal(t, []int{0}, plan.Retire, "one idle worker gives way for one task")
	assert.Empty(t, plan.Wake)
}

func TestPlanNeverRetiresBusyOrNeededWorkers(t *testing.T) {
	slots := []Slot{idleAt(0, roleA), {Index: 1, RoleID: roleB, JobID: 4}}
	plan := PlanRound([]RoleQueue{queue("a", roleA, 1), queue("c", roleC, 2)}, slots, 2)
	assert.Equal(t, []int{0}, plan.Wake)
	assert.Empty(t, plan.Retire, "the idle worker has its own role's task to run; the busy one is busy")
}

func TestDispatcherWakesAndRetires(t *testing.T) {
	c := newCluster()
	c.capacity = 2
	c.queues = []RoleQueue{queue("a", roleA, 2)}
	c.slots = []Slot{idleAt(0, roleA), idleAt(1, roleB)}
	runRounds(t, c, 1)
	assert.Equal(t, []int{0}, c.woken)
	assert.Equal(t, []int{1}, c.retired)
}

func TestPlanServesRolesWithFewestWorkersFirst(t *testing.T) {
	slots := []Slot{busyAt(0, roleA, 1), busyAt(1, roleA, 2)}
	plan := PlanRound([]RoleQueue{queue("a", roleA, 5), queue("b", roleB, 5)}, slots, 3)
	assert.Equal(t, []uint32{roleB}, plan.Launch, "the one free slot goes to the role with no worker, not to the older queue")
}

// A role whose queue never empties (or whose rows are locked so that they
// look queued) holds every slot: a role with a task and no worker takes
// one, idle first, else busy (it leaves after its task).
func TestPlanTakesASlotFromTheBusiestRole(t *testing.T) {
	hog := queue("hog", roleA, 4)
	hog.OldestJob = 1
	victim := queue("victim", roleB, 1)
	victim.OldestJob = 99
	busy := []Slot{busyAt(0, roleA, 1), busyAt(1, roleA, 2), busyAt(2, roleA, 3)}
	plan := PlanRound([]RoleQueue{hog, victim}, busy, 3)
	assert.Empty(t, plan.Launch)
	assert.Equal(t, []int{0}, plan.Retire, "a busy worker of the hog leaves after its task")

	withIdle := []Slot{busyAt(0, roleA, 1), idleAt(1, roleA), busyAt(2, roleA, 3)}
	plan = PlanRound([]RoleQueue{hog, victim}, withIdle, 3)
	assert.Equal(t, []int{1}, plan.Retire, "an idle worker goes first")
	assert.Equal(t, []int{1}, plan.Wake, "(it is woken too, and leaves)")
}

func TestPlanCountsRetiringSlotsAsFreed(t *testing.T) {
	slots := []Slot{{Index: 0, RoleID: roleA, JobID: 1, Retiring: true}, busyAt(1, roleA, 2), busyAt(2, roleA, 3)}
	plan := PlanRound([]RoleQueue{queue("a", roleA, 4), queue("b", roleB, 1)}, slots, 3)
	assert.Empty(t, plan.Retire, "one slot is on its way to role b already")
}

func TestPlanLeavesOneWorkerToEachRole(t *testing.T) {
	slots := []Slot{busyAt(0, roleA, 1), busyAt(1, roleB, 2)}
	plan := PlanRound([]RoleQueue{queue("a", roleA, 3), queue("b", roleB, 3), queue("c", roleC, 1)}, slots, 2)
	assert.Empty(t, plan.Retire, "nobody holds two slots: role c waits for one to end")
}

func busyAt(index int, roleID uint32, job int64) Slot {
	return Slot{Index: index, RoleID: roleID, JobID: job}
}
