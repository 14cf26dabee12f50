package control

import "time"

// Exit is how a worker ended, as its slot recorded it.
type Exit struct {
	RoleID uint32
	JobID  int64  // the task it was running, 0 when none
	Table  uint32 // the lantern.tasks that task came from
	Clean  bool   // it ran out of tasks and returned normally
}

// Backoff keeps the dispatcher from relaunching, in a tight loop, workers
// that die before they can claim anything (a login refused by a
// connection limit, a broken install). A worker that dies while running a
// task is not a reason: that task is marked failed, so each such death
// makes progress.
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
	if e.Clean || e.JobID != 0 {
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
