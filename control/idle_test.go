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
