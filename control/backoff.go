package control

import "time"

// Exit is how a worker ended, as its slot recorded it.
type Exit struct {
	RoleID   uint32
	JobID    int64  // the task it was running, 0 when none
	Table    uint32 // the lantern.tasks that task came from
	Canceled bool   // lantern.cancel_task() was accepted for that task
	Clean    bool   // it ran out of tasks and returned normally
	TasksRun int64  // tasks it finished
}

// productive tells whether the launch that ended this way did useful work
// without dying: only that clears a role's backoff.
func (e Exit) productive() bool {
	return e.Clean && e.TasksRun > 0
}

// Backoff keeps the dispatcher from relaunching workers for a role in a
// tight loop. Any launch that did not end productively counts: a worker
// that died before it could claim anything (a login refused, a broken
// install), one that found nothing to claim (a user holds its role's
// pending rows locked in an open transaction), and one that died in the
// middle of a task (the task is failed, so that makes progress, but a
// queue of tasks that each kill their own process must not make the
// server fork as fast as it can).
type Backoff struct {
	Min, Max time.Duration
	until    map[uint32]time.Time
	delay    map[uint32]time.Duration
}

// Observe updates a role's backoff from how one of its workers ended.
func (b *Backoff) Observe(e Exit, now time.Time) {
	if b.until == nil {
		b.until = make(map[uint32]time.Time)
		b.delay = make(map[uint32]time.Duration)
	}
	if e.productive() {
		delete(b.until, e.RoleID)
		delete(b.delay, e.RoleID)
		return
	}
	d := min(max(2*b.delay[e.RoleID], b.Min), b.Max)
	b.delay[e.RoleID] = d
	b.until[e.RoleID] = now.Add(d)
}

// Waiting tells whether launches for a role are held back at this time.
func (b *Backoff) Waiting(roleID uint32, now time.Time) bool {
	return now.Before(b.until[roleID])
}

// Delay is the current hold-back for a role, 0 when none.
func (b *Backoff) Delay(roleID uint32) time.Duration {
	return b.delay[roleID]
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
