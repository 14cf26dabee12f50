package control

import "sort"

// retirements frees slots for demand no free slot could meet. Each key with
// work and no process at all (owned: before this round) takes, in turn
// (served longest ago first), the slot of an idle worker whose key has
// nothing noted, or else one from the key holding the most: an idle
// worker if there is one, else a busy one, which leaves after its current
// task. A key's only worker gives way too, once it has finished a task
// since it started (so two keys sharing one slot alternate, task by task,
// rather than thrash). So however many tasks one database or role keeps
// queued, or keeps submitting, other work waits about one task's run time
// at most. A key that just lost a slot still has its worker running, so
// it takes none in turn. Slots already retiring are promised to the first
// such keys. Then idle workers of keys with nothing noted give way to the
// demand still unmet, once they no longer linger (linger.go): a role
// between two of its tasks keeps its warm worker for a moment against a
// backlog that has workers already.
func retirements(demands []Demand, slots []Slot, need []int64, owned map[Key]int) []int {
	var retire []int
	promised := 0
	for _, s := range slots {
		if s.Retiring {
			promised++
		}
	}
	held := make(map[Key]int, len(owned))
	for k, n := range owned {
		held[k] = n
	}
	noted := make(map[Key]bool)
	for _, d := range demands {
		noted[d.Key] = true
	}
	taken := make(map[int]bool)
	for _, i := range starving(demands, need, owned) {
		if promised > 0 {
			promised--
			need[i]--
			continue
		}
		victim, ok := unneededSlot(slots, noted, taken, false)
		if !ok {
			victim, ok = busiestSlot(slots, held, taken)
		}
		if ok {
			retire = append(retire, victim.Index)
			taken[victim.Index] = true
			held[victim.Key]--
			need[i]--
		}
	}
	for unmet := sum(need) - int64(promised); unmet > 0; unmet-- {
		victim, ok := unneededSlot(slots, noted, taken, true)
		if !ok {
			break
		}
		retire = append(retire, victim.Index)
		taken[victim.Index] = true
	}
	return retire
}

// unneededSlot picks an idle worker whose key has nothing noted: it gives
// its slot up at once and loses nothing; with patient, not one that lingers.
func unneededSlot(slots []Slot, noted map[Key]bool, taken map[int]bool, patient bool) (Slot, bool) {
	for _, s := range slots {
		if !s.Scout() && s.JobID == 0 && !s.Retiring && !noted[s.Key] && !taken[s.Index] &&
			!(patient && s.Lingering) {
			return s, true
		}
	}
	return Slot{}, false
}

// starving lists the demands with work and no process, served longest ago first.
func starving(demands []Demand, need []int64, owned map[Key]int) []int {
	var idx []int
	for i, d := range demands {
		if need[i] > 0 && owned[d.Key] == 0 {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return demands[idx[a]].Served < demands[idx[b]].Served })
	return idx
}

// busiestSlot picks a worker slot of the key with the most workers,
// preferring an idle one. A key's last worker qualifies only once it has
// finished a task. Scouts are never retired: they end on their own.
func busiestSlot(slots []Slot, held map[Key]int, taken map[int]bool) (Slot, bool) {
	var best Slot
	found := false
	for _, s := range slots {
		if s.Scout() || s.Retiring || taken[s.Index] || held[s.Key] < 1 ||
			(held[s.Key] == 1 && s.TasksRun == 0) {
			continue
		}
		if !found || held[s.Key] > held[best.Key] ||
			(held[s.Key] == held[best.Key] && best.JobID != 0 && s.JobID == 0) {
			best, found = s, true
		}
	}
	return best, found
}
