package control

// sweepQueue holds the databases a sweep of every database still has to
// scout (after a server start, a launcher restart, or a demand board that
// overflowed), in the launcher's own memory: there may be any number of
// them, and none takes a place on the board, which stays free for the
// commits of submits. The launcher hands a few of them to each round
// (sweepCandidates), so a round's work is bounded whatever their number.
//
// A database leaves the queue when a scout of it starts, and is in flight
// until that scout ends: a scout that did not sweep (it died, or was asked
// to leave) puts it back.
type sweepQueue struct {
	order    []queued          // oldest request first; entries no longer queued are skipped
	queued   map[uint32]uint64 // database → its entry's ticket in order
	inFlight map[uint32]bool
	tickets  uint64
}

type queued struct {
	db     uint32
	ticket uint64
}

func (q *sweepQueue) init() {
	q.queued = make(map[uint32]uint64)
	q.inFlight = make(map[uint32]bool)
}

// add asks for a scout of db (once: a database already queued keeps its place).
func (q *sweepQueue) add(db uint32) {
	if _, ok := q.queued[db]; ok {
		return
	}
	q.tickets++
	q.queued[db] = q.tickets
	q.order = append(q.order, queued{db, q.tickets})
}

// want asks for a scout of db unless one is queued or running already (a
// database whose history is due stays due until its scout has noted it).
func (q *sweepQueue) want(db uint32) {
	if !q.inFlight[db] {
		q.add(db)
	}
}

// remove forgets db (it was dropped).
func (q *sweepQueue) remove(db uint32) {
	delete(q.queued, db)
	delete(q.inFlight, db)
}

// started: a scout of db started; it carries the request if there was one.
func (q *sweepQueue) started(db uint32) {
	if _, ok := q.queued[db]; ok {
		delete(q.queued, db)
		q.inFlight[db] = true
	}
}

// ended: a scout of db ended; one that did not sweep leaves the request to
// the next.
func (q *sweepQueue) ended(db uint32, swept bool) {
	if q.inFlight[db] {
		delete(q.inFlight, db)
		if !swept {
			q.add(db)
		}
	}
}

// empty tells whether nothing is queued or in flight.
func (q *sweepQueue) empty() bool { return len(q.queued) == 0 && len(q.inFlight) == 0 }

// front lists, oldest first, up to n databases queued, looking at no more
// than look entries. Every entry looked at goes to the back: one held back
// (skip: a backoff, a rest, a block) never keeps the others from being
// looked at, and one picked is either started (and leaves the queue) or
// comes round again. Amortized, a call costs what it looks at.
func (q *sweepQueue) front(n, look int, skip func(db uint32) bool) []uint32 {
	var picked []uint32
	look = min(look, len(q.queued)) // each queued database is in order once: one pass at most
	for len(q.order) > 0 && len(picked) < n && look > 0 {
		e := q.order[0]
		q.order = q.order[1:]
		if q.queued[e.db] != e.ticket {
			continue // started, removed, or queued again later
		}
		look--
		q.order = append(q.order, e)
		if !skip(e.db) {
			picked = append(picked, e.db)
		}
	}
	return picked
}

// sweepIfNeeded queues a scout of every database (sweepQueue) after a
// server start (each fails the tasks the previous life left running, and
// notes the roles with pending tasks), after the board overflowed (the
// scouts find from the tables what the board could not hold), and when a
// launcher starts after another one ended (what that one had queued, in
// its own memory, is lost). A database already queued keeps its place,
// so an overflow during a sweep adds only the databases swept since: the
// sweep never starts over, and never fills the board it was sent to make
// up for.
func (l *Launcher) sweepIfNeeded() error {
	c := l.Cluster
	start := c.ReconcileNeeded()
	if c.TakeOverflow() {
		l.overflowed = "demand board" // kept until a sweep is queued
	}
	if !start && l.overflowed == "" && l.begun {
		return nil
	}
	dbs, err := c.Databases()
	if err != nil {
		return err
	}
	if l.sweep.empty() {
		l.overflowLogged = false
	}
	if l.overflowed != "" && l.begun && !start && !l.overflowLogged {
		// Rare, and costly (the databases swept since are scouted again):
		// the log says why a sweep took more scouts than databases.
		l.overflowLogged = true
		l.Log.Logf("lantern_async launcher: the %s overflowed; every database (%d) is queued for a scout",
			l.overflowed, len(dbs))
	}
	l.overflowed, l.begun = "", true
	for _, db := range dbs {
		l.sweep.add(db)
		if start {
			l.startSweep[db] = true
		}
	}
	if start {
		c.MarkReconciled()
	}
	return nil
}

// sweepLook bounds how many queued databases a round looks at beyond one
// per slot (those held back by a backoff, a rest or a block).
const sweepLook = 16

// sweepCandidates picks, oldest request first, the databases of a queue
// (the sweep, or the history due) a scout may start for in this round: at
// most one per slot, none that has a scout running or among the demands,
// backs off, rests, or that a DROP/ALTER/CREATE DATABASE blocks; one that
// is gone leaves the queue. One look at the catalogs for them, none when
// the queue is empty. The sweep's are background demands
// (Demand.Background); the history's are like the board's, as they were
// when they were noted there.
func (l *Launcher) sweepCandidates(q *sweepQueue, demands []Demand, slots []Slot, capacity int, background bool) ([]Demand, error) {
	if len(q.queued) == 0 {
		return nil, nil
	}
	scouting := make(map[uint32]bool)
	for _, s := range slots {
		if s.Scout() {
			scouting[s.DB] = true
		}
	}
	for _, d := range demands {
		if d.Scout() {
			scouting[d.DB] = true
		}
	}
	dbs := q.front(capacity, 4*capacity+sweepLook, func(db uint32) bool {
		k := Key{DB: db}
		return scouting[db] || l.Backoff.Waiting(k, l.now) || l.resting(k, l.now)
	})
	if len(dbs) == 0 {
		return nil, nil
	}
	keys := make([]Key, len(dbs))
	for i, db := range dbs {
		keys[i] = Key{DB: db}
	}
	verdicts, err := l.Cluster.Check(keys)
	if err != nil {
		return nil, err
	}
	var picked []Demand
	for i, k := range keys {
		if !l.setAside(k.DB, verdicts[i]) {
			picked = append(picked, Demand{Key: k, Background: background})
		}
	}
	return picked, nil
}
