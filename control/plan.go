// Package control is the launcher of lantern_async and its scouts. The
// launcher is connected to no database: it reads the demand board in
// shared memory (where submits note their work at commit) and keeps enough
// processes running, one (database, role) per worker, within
// lantern_async.max_workers for the whole cluster. A scout sweeps one
// database. Neither imports "C": the PostgreSQL side sits behind the
// Cluster and Site interfaces.
package control

import "time"

// Key names what a process serves: a role's tasks in a database, or, with
// Role 0, a scout's sweep of the database.
type Key struct {
	DB   uint32
	Role uint32
}

// Scout tells whether the key is a database's sweep rather than a role's tasks.
func (k Key) Scout() bool { return k.Role == 0 }

// Demand is one entry of the demand board: work that may be waiting.
type Demand struct {
	Key
	Seq  uint64 // order in which the work was first noted: oldest first
	Hint int64  // tasks believed pending (for how many workers to start)
	// Due is when its work may start (a run_after, a retry's time); the
	// zero time, or any time not after the round's instant, means now. A
	// round holds back a demand not due yet (servable) and naps until it is.
	Due time.Time
	// Served orders the keys by when a process was last started for them
	// (the launcher's launch count then; 0: never): among equals, the key
	// served longest ago goes first, so keys sharing slots take turns.
	Served uint64
	// Background marks a sweep's scout (Launcher.sweepCandidates): the
	// scouts of sweeps never take the last free slot while there are two or
	// more (a task committed meanwhile starts at once), nor more than the
	// other slots, launched or retired for (PlanRound).
	Background bool
}

// Slot is a process slot in use: what it serves, and the task it runs (0
// while it starts up, looks for its next task, waits idle or sweeps).
type Slot struct {
	Index int
	Key
	JobID    int64
	TasksRun int64
	Retiring bool // asked to give the slot up; it leaves after its current task
	// Lingering: an idle worker that finished a task less than the idle
	// grace ago (linger.go): it gives way to a key with no process only.
	Lingering bool
}

// Plan is what one launcher round decides.
type Plan struct {
	Launch []Key // one process per entry
	Wake   []int // idle workers (slot indexes) whose key has work again
	Retire []int // workers whose slot other waiting work needs
}

// PlanRound decides which processes to start, wake and retire for the
// demands (given oldest first) within capacity slots. Each launch goes to
// the demand whose database holds the fewest slots, then whose key holds
// the fewest, then whose key was served longest ago: a database or role
// with a long queue cannot take every slot from another, and keys that
// share slots take turns. A worker that is not running a task will claim
// one, so it counts against its key's demand. When no slot is free, a key
// with work and no process takes one from the busiest (see retirements).
func PlanRound(demands []Demand, slots []Slot, capacity int) Plan {
	var plan Plan
	free := capacity - len(slots)
	held, heldDB := heldCounts(slots)
	owned := make(map[Key]int, len(held))
	for k, n := range held {
		owned[k] = n
	}
	need := make([]int64, len(demands))
	waiting := idleByKey(slots)
	for i, d := range demands {
		need[i] = d.need(held[d.Key], waiting[d.Key])
	}
	// A sweep's scouts (Background) never take the last free slot while
	// there are two or more, so a task committed meanwhile starts at once,
	// and hold at most the other slots (sweepRoom).
	reserve := min(1, capacity-1)
	sweepRoom := capacity - reserve - scoutCount(slots)
	for ; free > 0; free-- {
		i, ok := nextLaunch(demands, need, held, heldDB, free > reserve && sweepRoom > 0)
		if !ok {
			break
		}
		plan.Launch = append(plan.Launch, demands[i].Key)
		need[i]--
		held[demands[i].Key]++
		heldDB[demands[i].DB]++
		if demands[i].Background {
			sweepRoom--
		}
	}
	plan.Wake = wakeIdle(demands, slots)
	// Within its room a sweep takes slots from the busiest like any key
	// (else a database with a backlog would keep every other database's
	// pending tasks undiscovered until it ran out); beyond it, it waits.
	for i, d := range demands {
		if d.Background && need[i] > 0 {
			if sweepRoom > 0 {
				sweepRoom--
			} else {
				need[i] = 0
			}
		}
	}
	plan.Retire = retirements(demands, slots, need, owned)
	return plan
}

// nextLaunch picks the demand the next free slot goes to, as PlanRound
// says; a background one only if background is true.
func nextLaunch(demands []Demand, need []int64, held map[Key]int, heldDB map[uint32]int, background bool) (int, bool) {
	best := -1
	for i, d := range demands {
		if need[i] == 0 || (d.Background && !background) {
			continue
		}
		if best < 0 || before(d, demands[best], held, heldDB) {
			best = i
		}
	}
	return best, best >= 0
}

// scoutCount counts the scouts in slots.
func scoutCount(slots []Slot) int {
	n := 0
	for _, s := range slots {
		if s.Scout() {
			n++
		}
	}
	return n
}

// before orders two demands for a slot; equal ones keep the given order.
func before(a, b Demand, held map[Key]int, heldDB map[uint32]int) bool {
	if heldDB[a.DB] != heldDB[b.DB] {
		return heldDB[a.DB] < heldDB[b.DB]
	}
	if held[a.Key] != held[b.Key] {
		return held[a.Key] < held[b.Key]
	}
	return a.Served < b.Served
}

// need is how many more processes the demand could use, given the slots
// its key holds and how many of them are idle (they will claim without a
// launch). A scout is one process. A role gets one per task believed
// pending beyond its idle workers, and at least one when it has none at
// all (the hint may lag); a busy worker looks for its role's next task
// when it finishes, so it serves the demand too.
func (d Demand) need(held int, idle int64) int64 {
	if d.Scout() {
		if held > 0 {
			return 0
		}
		return 1
	}
	n := max(d.Hint-idle, 0)
	if held == 0 {
		n = max(n, 1)
	}
	return n
}

// wakeIdle lists the idle workers whose key has work noted: they claim it
// (or, when asked to retire, leave).
func wakeIdle(demands []Demand, slots []Slot) []int {
	noted := make(map[Key]bool)
	for _, d := range demands {
		noted[d.Key] = true
	}
	var wake []int
	for _, s := range slots {
		if !s.Scout() && s.JobID == 0 && noted[s.Key] {
			wake = append(wake, s.Index)
		}
	}
	return wake
}

// heldCounts counts the slots of each key and each database that are not
// being given up.
func heldCounts(slots []Slot) (map[Key]int, map[uint32]int) {
	held := make(map[Key]int)
	heldDB := make(map[uint32]int)
	for _, s := range slots {
		if !s.Retiring {
			held[s.Key]++
			heldDB[s.DB]++
		}
	}
	return held, heldDB
}

// idleByKey counts the processes that will look for work of their key
// without a launch: idle workers, and a scout already sweeping.
func idleByKey(slots []Slot) map[Key]int64 {
	idle := make(map[Key]int64)
	for _, s := range slots {
		if s.JobID == 0 && !s.Retiring {
			idle[s.Key]++
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
