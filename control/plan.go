// Package control is the dispatcher of lantern_async: it watches the
// queue in lantern.tasks and keeps enough worker processes running, one
// role per worker, within lantern_async.max_workers. It never imports "C":
// the PostgreSQL side sits behind the Cluster interface.
package control

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
	Index  int
	RoleID uint32
	JobID  int64
}

// Plan is what one dispatcher round decides.
type Plan struct {
	Launch []uint32    // one worker per entry, for that role
	Refuse []RoleQueue // queues whose tasks can never run: fail them
	Wake   []int       // idle workers (slot indexes) whose role has tasks again
	Retire []int       // idle workers whose slot another role's tasks need
}

// PlanRound decides which workers to start. Roles are served oldest task
// first, one worker per role per pass, so a role with a long queue cannot
// take every slot from a role that submitted earlier. A worker that is not
// running a task yet will claim one, so it counts against its role's queue.
func PlanRound(queues []RoleQueue, slots []Slot, capacity int) Plan {
	var plan Plan
	free := capacity - len(slots)
	need := make([]int64, len(queues))
	waiting := idleByRole(slots)
	for i, q := range queues {
		if !q.runnable() {
			plan.Refuse = append(plan.Refuse, q)
			continue
		}
		need[i] = max(q.Pending-waiting[q.RoleID], 0)
	}
	for launched := true; launched && free > 0; {
		launched = false
		for i, q := range queues {
			if need[i] == 0 || free == 0 {
				continue
			}
			plan.Launch = append(plan.Launch, q.RoleID)
			need[i]--
			free--
			launched = true
		}
	}
	plan.Wake, plan.Retire = idleWork(queues, slots, sum(need))
	return plan
}

// idleWork wakes the idle workers whose role has pending tasks (they
// claim them), and asks idle workers of roles with nothing pending to give
// their slots up, one for each worker that could not be launched.
func idleWork(queues []RoleQueue, slots []Slot, unmet int64) (wake, retire []int) {
	pending := make(map[uint32]bool)
	for _, q := range queues {
		if q.runnable() {
			pending[q.RoleID] = true
		}
	}
	for _, s := range slots {
		switch {
		case s.JobID != 0:
		case pending[s.RoleID]:
			wake = append(wake, s.Index)
		case unmet > 0:
			retire = append(retire, s.Index)
			unmet--
		}
	}
	return wake, retire
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

func idleByRole(slots []Slot) map[uint32]int64 {
	idle := make(map[uint32]int64)
	for _, s := range slots {
		if s.JobID == 0 {
			idle[s.RoleID]++
		}
	}
	return idle
}
