package control

import "time"

// HistoryNote is what the history inbox in shared memory (loader/state/history.c)
// gathered about one database's finished tasks since the launcher last
// took it: the commits' notes, and a scout's finding.
type HistoryNote struct {
	DB uint32
	// Finished is the earliest finish commits noted (zero: none noted, or
	// all of them before Look, which the scout's look saw); NoteGen numbers
	// the latest note.
	Finished time.Time
	NoteGen  uint64
	// Set: a scout noted Oldest, the earliest finish left (zero: none),
	// StillDue (rows due it could not delete: someone holds them locked),
	// and Look, the count of notes before its look's snapshot.
	Set      bool
	Oldest   time.Time
	StillDue bool
	Look     uint64
}

// History is the launcher's record of when each database's finished tasks
// fall due for lantern_async.history_retention: one entry per database
// that has some, in the launcher's own memory, however many there are.
type History struct {
	// RetryAfter is how long a database whose due rows were locked waits
	// before another scout (nobody's lock makes a scout loop).
	RetryAfter time.Duration
	entries    map[uint32]*historyEntry
	// next is no later than the earliest time any entry may fall due with
	// the retention nextFor: a round before it looks at no entry.
	next    time.Time
	nextFor time.Duration
}

type historyEntry struct {
	oldest    time.Time // earliest finish of a row still there
	notBefore time.Time // no scout before then (locked rows)
	noteGen   uint64    // the latest commit's note taken
}

// Apply takes one note from the inbox. A scout's finding replaces the
// entry, except that it never erases a commit's note numbered after its
// look began (the look may not have seen those rows): the earlier of the
// two stays, at worst one scout too early. The inbox clears the notes the
// look saw; the ones taken in earlier rounds are compared here.
func (h *History) Apply(n HistoryNote, now time.Time) {
	if h.entries == nil {
		h.entries = make(map[uint32]*historyEntry)
	}
	e := h.entries[n.DB]
	if n.Set {
		switch {
		case e != nil && e.noteGen > n.Look:
			e.oldest = earliest(e.oldest, n.Oldest)
		case n.Oldest.IsZero():
			delete(h.entries, n.DB)
			e = nil
		default:
			if e == nil {
				e = &historyEntry{}
				h.entries[n.DB] = e
			}
			e.oldest = n.Oldest
		}
		if e != nil {
			e.notBefore = time.Time{}
			if n.StillDue {
				e.notBefore = now.Add(h.RetryAfter)
			}
		}
	}
	if !n.Finished.IsZero() {
		if e == nil {
			e = &historyEntry{}
			h.entries[n.DB] = e
		}
		e.oldest = earliest(e.oldest, n.Finished)
		e.noteGen = max(e.noteGen, n.NoteGen)
	}
	h.next = time.Time{} // look again at the next Due
}

// Forget drops a database that is gone.
func (h *History) Forget(db uint32) { delete(h.entries, db) }

// Due lists the databases whose earliest finish plus retention has passed
// (none without a retention) and that may have a scout now. A round before
// the earliest time one can fall due costs no look at the entries.
func (h *History) Due(now time.Time, retention time.Duration) []uint32 {
	if retention <= 0 || (retention == h.nextFor && now.Before(h.next)) {
		return nil
	}
	h.nextFor = retention
	var due []uint32
	var next time.Time
	for db, e := range h.entries {
		at := e.oldest.Add(retention)
		if e.notBefore.After(at) {
			at = e.notBefore
		}
		if !now.Before(at) {
			due = append(due, db)
		} else if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if len(due) == 0 {
		h.next = next // nothing due until then (zero: no entry)
		if next.IsZero() {
			h.next = now.Add(retention) // a note resets it
		}
	}
	return due
}

// Len is how many databases have an entry.
func (h *History) Len() int { return len(h.entries) }

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
