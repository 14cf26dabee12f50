package control

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Role ids used by the tests.
const (
	roleA uint32 = 10
	roleB uint32 = 20
	roleC uint32 = 30
)

// queue is a runnable queue of a role that still exists and can log in.
func queue(name string, roleID uint32, pending int64) RoleQueue {
	return RoleQueue{Username: name, RoleID: roleID, RoleExists: true, CanLogin: true, Pending: pending}
}

// unowned is a queue of rows not submitted through async_task, under a
// name that may well still be a role that can log in.
func unowned(name string, pending int64) RoleQueue {
	return queue(name, 0, pending)
}

func dropped(q RoleQueue) RoleQueue {
	q.RoleExists = false
	return q
}

func noLogin(q RoleQueue) RoleQueue {
	q.CanLogin = false
	return q
}

func idle(roleID uint32) Slot            { return Slot{RoleID: roleID} }
func busy(roleID uint32, job int64) Slot { return Slot{RoleID: roleID, JobID: job} }

func TestPlanRound(t *testing.T) {
	a, b, c := queue("a", roleA, 10), queue("b", roleB, 2), queue("c", roleC, 1)
	stray := unowned("mallory", 3)
	ghost := dropped(queue("ghost", roleB, 3))
	locked := noLogin(queue("locked", roleC, 3))
	tests := []struct {
		name     string
		queues   []RoleQueue
		slots    []Slot
		capacity int
		launch   []uint32
		refuse   []RoleQueue
	}{
		{name: "empty", capacity: 4},
		{name: "no capacity", queues: []RoleQueue{a}, capacity: 0},
		{name: "capacity respected", queues: []RoleQueue{a}, capacity: 3,
			launch: []uint32{roleA, roleA, roleA}},
		{name: "launches no more than pending", queues: []RoleQueue{queue("a", roleA, 2)}, capacity: 8,
			launch: []uint32{roleA, roleA}},
		{name: "idle slots count against pending",
			queues: []RoleQueue{queue("a", roleA, 3)}, slots: []Slot{idle(roleA), idle(roleA)}, capacity: 10,
			launch: []uint32{roleA}},
		{name: "busy slots do not count against pending",
			queues: []RoleQueue{queue("a", roleA, 3)}, slots: []Slot{busy(roleA, 5), busy(roleA, 6)}, capacity: 10,
			launch: []uint32{roleA, roleA, roleA}},
		{name: "pending covered by idle workers",
			queues: []RoleQueue{queue("a", roleA, 2)}, slots: []Slot{idle(roleA), idle(roleA), idle(roleA)}, capacity: 10},
		{name: "idle slots of another role do not count against pending",
			queues: []RoleQueue{queue("a", roleA, 1)}, slots: []Slot{idle(roleB)}, capacity: 4,
			launch: []uint32{roleA}},
		{name: "slots of all roles count against capacity",
			queues: []RoleQueue{a}, slots: []Slot{busy(roleB, 7), idle(roleC)}, capacity: 4,
			launch: []uint32{roleA, roleA}},
		{name: "more slots than capacity",
			queues: []RoleQueue{a}, slots: []Slot{busy(roleB, 1), busy(roleB, 2), busy(roleC, 3)}, capacity: 2},
		{name: "round robin", queues: []RoleQueue{a, b}, capacity: 4,
			launch: []uint32{roleA, roleB, roleA, roleB}},
		{name: "round robin follows queue order", queues: []RoleQueue{b, a}, capacity: 4,
			launch: []uint32{roleB, roleA, roleB, roleA}},
		{name: "round robin until queues run dry", queues: []RoleQueue{a, b, c}, capacity: 10,
			launch: []uint32{roleA, roleB, roleC, roleA, roleB, roleA, roleA, roleA, roleA, roleA}},
		{name: "round robin after idle slots", queues: []RoleQueue{a, b}, slots: []Slot{idle(roleB)}, capacity: 4,
			launch: []uint32{roleA, roleB, roleA}},
		{name: "rows not submitted through async_task are refused", queues: []RoleQueue{stray}, capacity: 4,
			refuse: []RoleQueue{stray}},
		{name: "role that does not exist is refused", queues: []RoleQueue{ghost}, capacity: 4,
			refuse: []RoleQueue{ghost}},
		{name: "role that cannot log in is refused", queues: []RoleQueue{locked}, capacity: 4,
			refuse: []RoleQueue{locked}},
		{name: "refused queues take no capacity",
			queues: []RoleQueue{ghost, queue("a", roleA, 5), stray, locked}, capacity: 2,
			launch: []uint32{roleA, roleA}, refuse: []RoleQueue{ghost, stray, locked}},
		{name: "refused even without capacity",
			queues: []RoleQueue{ghost, stray, locked}, slots: []Slot{busy(roleA, 1)}, capacity: 1,
			refuse: []RoleQueue{ghost, stray, locked}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanRound(tc.queues, tc.slots, tc.capacity)
			assert.Equal(t, tc.launch, plan.Launch, "launch")
			assert.Equal(t, tc.refuse, plan.Refuse, "refuse")
		})
	}
}
