package control

import "time"

// Exit is how a worker or scout ended, as its slot recorded it.
type Exit struct {
	Key
	JobID    int64  // the task it was running, 0 when none
	Table    uint32 // the lantern.tasks that task came from
	Canceled bool   // lantern.cancel_task() was accepted for that task
	Clean    bool   // it ran out of work and returned normally
	Parked   bool   // it left its task's outcome for a scout (now in the lost list)
	Retired  bool   // it had been asked to give its slot up (plan_retire.go, the database guard)
	TasksRun int64  // tasks it finished
}

// productive tells whether the launch that ended this way did useful work
// without dying: only that clears a key's backoff. A scout's work is its
// sweep, so a clean scout is productive.
func (e Exit) productive() bool {
	return e.Clean && (e.TasksRun > 0 || e.Scout())
}

// Backoff keeps the launcher from relaunching workers for a (database,
// role) in a tight loop. Any launch that did not end productively counts:
// a worker that died before it could claim anything (a login refused, a
// broken install, a database being dropped), one that found nothing to
// claim (a user holds its role's pending rows locked in an open
// transaction), and one that died in the middle of a task (the task is
// failed, so that makes progress, but a queue of tasks that each kill their
// own process must not make the server fork as fast as it can).
type Backoff struct {
	Min, Max time.Duration
	until    map[Key]time.Time
	delay    map[Key]time.Duration
}

// Observe updates a key's backoff from how one of its processes ended;
// heldBack tells whether that exit counted against the key.
func (b *Backoff) Observe(e Exit, now time.Time) (heldBack bool) {
	if b.until == nil {
		b.until = make(map[Key]time.Time)
		b.delay = make(map[Key]time.Duration)
	}
	if e.productive() {
		delete(b.until, e.Key)
		delete(b.delay, e.Key)
		return false
	}
	if e.Clean && e.Retired {
		// Asked to leave before it had done anything: it says nothing of
		// the key either way (a hold-back already in force stays).
		return false
	}
	d := min(max(2*b.delay[e.Key], b.Min), b.Max)
	b.delay[e.Key] = d
	b.until[e.Key] = now.Add(d)
	return true
}

// Waiting tells whether launches for a key are held back at this time.
func (b *Backoff) Waiting(k Key, now time.Time) bool {
	return now.Before(b.until[k])
}

// Delay is the current hold-back for a key, 0 when none.
func (b *Backoff) Delay(k Key) time.Duration {
	return b.delay[k]
}

// Forget drops what is known of a database that no longer exists.
func (b *Backoff) Forget(db uint32) {
	for k := range b.until {
		if k.DB == db {
			delete(b.until, k)
			delete(b.delay, k)
		}
	}
}

// NextExpiry is when the earliest hold-back still in force ends; ok is
// false when none is.
func (b *Backoff) NextExpiry(now time.Time) (next time.Time, ok bool) {
	for _, until := range b.until {
		if until.After(now) && (!ok || until.Before(next)) {
			next, ok = until, true
		}
	}
	return next, ok
}
