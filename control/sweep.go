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
