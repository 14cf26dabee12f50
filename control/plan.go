// Package control is the dispatcher of lantern_async: it watches the
// queue in lantern.tasks and keeps enough worker processes running, one
// role per worker, within lantern_async.max_workers. It never imports "C":
// the PostgreSQL side sits behind the Cluster interface.
package control

import "sort"

// RoleQueue summarizes the pending tasks of one role, followed by OID.
type RoleQueue struct {
	RoleID     uint32 // from lantern.task_owners; 0 for rows that have none
	Username   string // the name the tasks were submitted under
	RoleExists bool   // a role with that OID still exists
	CanLogin   bool
	OldestJob  int64
	Pending    int64
}

// runnable tells whether a worker can run this queue's tasks.
func (q RoleQueue) runnable() bool {
	return q.RoleID != 0 && q.RoleExists && q.CanLogin
}

// Slot is a worker slot in use: its role, and the task it runs (0 while
// it starts up, looks for its next task or waits idle for one).
type Slot struct {
	Index    int
	RoleID   uint32
	JobID    int64
	Retiring bool // asked to give the slot up; it leaves after its current task
}

// Plan is what one dispatcher round decides.
type Plan struct {
	Launch []uint32    // one worker per entry, for that role
	Refuse []RoleQueue // queues whose tasks can never run: fail them
	Wake   []int       // idle workers (slot indexes) whose role has tasks again
	Retire []int       // workers whose slot another role's tasks need
}

// PlanRound decides which workers to start, wake and retire. Roles with
// the fewest workers are served first, then oldest task first, one worker
// per role per pass, so a role with a long queue cannot take every slot
// from another. A worker that is not running a task yet will claim one, so
// it counts against its role's queue. When no slot is free, a role with
// tasks and no worker at all takes one from the role with the most (see
// retirements).
func PlanRound(queues []RoleQueue, slots []Slot, capacity int) Plan {
	var plan Plan
	free := capacity - len(slots)
	held := heldByRole(slots)
	need := make([]int64, len(queues))
	waiting := idleByRole(slots)
	for i, q := range queues {
		if !q.runnable() {
			plan.Refuse = append(plan.Refuse, q)
			continue
		}
		need[i] = max(q.Pending-waiting[q.RoleID], 0)
	}
	order := fewestWorkersFirst(queues, held)
	for launched := true; launched && free > 0; {
		launched = false
		for _, i := range order {
			if need[i] == 0 || free == 0 {
				continue
			}
			plan.Launch = append(plan.Launch, queues[i].RoleID)
			need[i]--
			free--
			launched = true
		}
	}
	plan.Wake = wakeIdle(queues, slots)
	plan.Retire = retirements(queues, order, slots, need, held)
	return plan
}

// fewestWorkersFirst orders the queues by the workers their role holds,
// keeping the oldest-task order among equals.
func fewestWorkersFirst(queues []RoleQueue, held map[uint32]int) []int {
	order := make([]int, len(queues))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return held[queues[order[a]].RoleID] < held[queues[order[b]].RoleID]
	})
	return order
}

// wakeIdle lists the idle workers whose role has pending tasks: they claim
// them (or, when asked to retire, leave).
func wakeIdle(queues []RoleQueue, slots []Slot) []int {
	pending := pendingRoles(queues)
	var wake []int
	for _, s := range slots {
		if s.JobID == 0 && pending[s.RoleID] {
			wake = append(wake, s.Index)
		}
	}
	return wake
}

// retirements frees slots for demand no free slot could meet. First, each
// role with tasks waiting and no worker takes a slot from the role holding
// the most (two or more, so that one keeps working), an idle one if it has
// one, else a busy one, which leaves after its current task: however many
// tasks one role keeps queued (or keeps locked so that they look queued),
// another role waits about one task's run time at most. Then idle workers
// of roles with nothing pending give way to what demand is left. Slots
// already retiring count as freed.
func retirements(queues []RoleQueue, order []int, slots []Slot, need []int64, held map[uint32]int) []int {
	var retire []int
	promised := 0
	for _, s := range slots {
		if s.Retiring {
			promised++
		}
	}
	taken := make(map[int]bool)
	for _, i := range order {
		if need[i] == 0 || held[queues[i].RoleID] > 0 {
			continue
		}
		if promised > 0 {
			promised--
			continue
		}
		if victim, ok := busiestRoleSlot(slots, held, taken); ok {
			retire = append(retire, victim.Index)
			taken[victim.Index] = true
			held[victim.RoleID]--
		}
	}
	unmet := sum(need) - int64(len(retire)) - int64(promised)
	pending := pendingRoles(queues)
	for _, s := range slots {
		if unmet <= 0 {
			break
		}
		if s.JobID == 0 && !s.Retiring && !pending[s.RoleID] && !taken[s.Index] {
			retire = append(retire, s.Index)
			unmet--
		}
	}
	return retire
}

// busiestRoleSlot picks a slot of the role with the most workers (at least
// two), preferring an idle one.
func busiestRoleSlot(slots []Slot, held map[uint32]int, taken map[int]bool) (Slot, bool) {
	var best Slot
	found := false
	for _, s := range slots {
		if s.Retiring || taken[s.Index] || held[s.RoleID] < 2 {
			continue
		}
		if !found || held[s.RoleID] > held[best.RoleID] ||
			(held[s.RoleID] == held[best.RoleID] && best.JobID != 0 && s.JobID == 0) {
			best, found = s, true
		}
	}
	return best, found
}

func pendingRoles(queues []RoleQueue) map[uint32]bool {
	pending := make(map[uint32]bool)
	for _, q := range queues {
		if q.runnable() {
			pending[q.RoleID] = true
		}
	}
	return pending
}

// heldByRole counts the slots of each role that are not being given up.
func heldByRole(slots []Slot) map[uint32]int {
	held := make(map[uint32]int)
	for _, s := range slots {
		if !s.Retiring {
			held[s.RoleID]++
		}
	}
	return held
}

func idleByRole(slots []Slot) map[uint32]int64 {
	idle := make(map[uint32]int64)
	for _, s := range slots {
		if s.JobID == 0 && !s.Retiring {
			idle[s.RoleID]++
		}
	}
	return idle
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}
