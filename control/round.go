package control

import (
	"sort"
	"time"
)

// round is one look at the cluster, one plan and its carrying out. The
// nap that follows counts from l.now, the instant it decides at.
func (l *Launcher) round() error {
	l.now = l.Now()
	l.refused = false
	demands, slots, err := l.look()
	if err != nil {
		return err
	}
	l.markServed(demands, slots)
	l.markLingering(slots)
	return l.carryOut(PlanRound(demands, slots, l.Cluster.Capacity()))
}

// look learns what ended (reap) and what is asked for: the slots in use,
// and the demands this round may serve, the board's first (oldest
// first), then the scouts of databases whose history is due, then a
// sweep's few.
func (l *Launcher) look() ([]Demand, []Slot, error) {
	c := l.Cluster
	if err := l.reap(); err != nil {
		return nil, nil, err
	}
	l.takeHistory()
	if err := l.sweepIfNeeded(); err != nil {
		return nil, nil, err
	}
	for _, db := range l.history.Due(l.now, c.HistoryRetention()) {
		l.due.want(db)
	}
	// Slots first, then the board: a claim lowers the board's count before
	// its slot shows the task, so in this order a task being claimed is
	// counted once (by an idle slot, or by neither) and never starts a
	// second worker.
	slots := c.Slots()
	demands, err := l.servable(c.Demands())
	if err != nil {
		return nil, nil, err
	}
	housekeeping, err := l.sweepCandidates(&l.due, demands, slots, c.Capacity(), false)
	if err != nil {
		return nil, nil, err
	}
	demands = append(demands, housekeeping...)
	background, err := l.sweepCandidates(&l.sweep, demands, slots, c.Capacity(), true)
	if err != nil {
		return nil, nil, err
	}
	return append(demands, background...), slots, nil
}

// carryOut wakes, retires and launches as the plan says. A launch that is
// refused ends the round: the launches after it wait for the next round
// (LaunchRetry at the latest, see nap).
func (l *Launcher) carryOut(plan Plan) error {
	c := l.Cluster
	for _, slot := range plan.Wake {
		c.Wake(slot)
	}
	for _, slot := range plan.Retire {
		c.Retire(slot)
	}
	for _, k := range plan.Launch {
		ok, err := c.Launch(k, k.Scout() && l.startSweep[k.DB])
		if err != nil {
			return err
		}
		if !ok {
			l.refused = true
			return nil
		}
		l.launched(k)
	}
	return nil
}

// launched records a launch: keys take turns by it (Demand.Served), and a
// scout begins its database's rest and carries the requests queued for it.
func (l *Launcher) launched(k Key) {
	l.launches++
	l.served[k] = l.launches
	if k.Scout() {
		l.scouted[k.DB] = l.Now()
		l.sweep.started(k.DB) // whichever way it was asked for, it sweeps
		l.due.started(k.DB)
	}
}

// takeHistory applies what the history inbox gathered; an inbox that
// overflowed lost notes, which a sweep of every database makes up for.
func (l *Launcher) takeHistory() {
	notes, overflow := l.Cluster.History()
	for _, n := range notes {
		l.history.Apply(n, l.now)
	}
	if overflow {
		l.overflowed = "history inbox"
	}
}

// markServed gives each demand its key's last launch, and forgets the keys
// that have neither a demand nor a slot any more.
func (l *Launcher) markServed(demands []Demand, slots []Slot) {
	present := make(map[Key]bool, len(demands)+len(slots))
	for i := range demands {
		demands[i].Served = l.served[demands[i].Key]
		present[demands[i].Key] = true
	}
	for _, s := range slots {
		present[s.Key] = true
	}
	for k := range l.served {
		if !present[k] {
			delete(l.served, k)
		}
	}
}

// servable keeps the demands that can be served now, oldest first, and
// settles the others: a database gone is forgotten; a role that can no
// longer run its tasks is handed to a scout, which fails them. A demand
// not due yet is held back before the catalogs are read (dueNow).
func (l *Launcher) servable(demands []Demand) ([]Demand, error) {
	sort.Slice(demands, func(a, b int) bool { return demands[a].Seq < demands[b].Seq })
	demands = l.dueNow(demands)
	now := l.now
	kept := demands[:0:0]
	l.blocked = false
	keys := make([]Key, len(demands))
	for i, d := range demands {
		keys[i] = d.Key
	}
	verdicts, err := l.Cluster.Check(keys)
	if err != nil {
		return nil, err
	}
	for i, d := range demands {
		switch {
		case l.setAside(d.DB, verdicts[i]):
		case verdicts[i] == RoleUnrunnable:
			l.Cluster.Forget(d.Key)
			l.Cluster.Note(Key{DB: d.DB})
		case !l.Backoff.Waiting(d.Key, now) && !l.resting(d.Key, now):
			kept = append(kept, d)
		}
	}
	return kept, nil
}

// dueNow keeps the demands due at the round's instant, in their order, and
// sets nextDue to the earliest Due of the others (zero: none), for the nap.
// A demand held back is not seen by the plan at all: it launches, wakes
// and retires nothing before its time, and costs no catalog look (its
// database or role is checked once it is due).
func (l *Launcher) dueNow(demands []Demand) []Demand {
	l.nextDue = time.Time{}
	due := make([]Demand, 0, len(demands))
	for _, d := range demands {
		if !d.Due.After(l.now) {
			due = append(due, d)
		} else if l.nextDue.IsZero() || d.Due.Before(l.nextDue) {
			l.nextDue = d.Due
		}
	}
	return due
}

// setAside settles a verdict on a database that keeps it from being served
// this round, and tells whether it did: a database gone is forgotten; one
// a DROP/ALTER/CREATE DATABASE blocks is looked at again soon
// (BlockedRecheck, see nap).
func (l *Launcher) setAside(db uint32, v Verdict) bool {
	switch v {
	case DatabaseGone:
		l.forgetDatabase(db)
		return true
	case DatabaseBlocked:
		l.blocked = true
		return true
	}
	return false
}

// forgetDatabase drops every trace of a database that is gone.
func (l *Launcher) forgetDatabase(db uint32) {
	l.Cluster.ForgetDatabase(db)
	l.Backoff.Forget(db)
	delete(l.startSweep, db)
	l.sweep.remove(db)
	l.due.remove(db)
	l.history.Forget(db)
}
