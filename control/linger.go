package control

import "time"

// An idle worker lingers for a while after its task: its role often
// submits the next one at once (a client that waits for each task before
// it submits the next), and a fresh worker costs a fork and a connection
// (pgbench -C: 2 to 22 ms on this project's machines). While it lingers it
// keeps its slot against another key's backlog, which has workers already
// (plan_retire.go); a key with no process at all still takes the slot at
// once. After the grace, the idle worker gives way as before.
const defaultIdleGrace = 100 * time.Millisecond

// idleMark is when the launcher first saw a slot idle, and what it served
// then: a slot whose key or task count changed is a new idle spell.
type idleMark struct {
	key      Key
	tasksRun int64
	since    time.Time
}

// markLingering sets Slot.Lingering on the idle workers first seen idle
// less than the grace ago, forgets the slots no longer idle, and keeps
// when the earliest grace ends (lingerEnd: the nap wakes the launcher
// then, since nobody else would; zero when none lingers).
func (l *Launcher) markLingering(slots []Slot) {
	grace := l.IdleGrace
	if grace == 0 {
		grace = defaultIdleGrace
	}
	seen := make(map[int]idleMark, len(l.idle))
	l.lingerEnd = time.Time{}
	for i := range slots {
		s := &slots[i]
		if s.Scout() || s.JobID != 0 || s.Retiring {
			continue
		}
		mark, ok := l.idle[s.Index]
		if !ok || mark.key != s.Key || mark.tasksRun != s.TasksRun {
			mark = idleMark{key: s.Key, tasksRun: s.TasksRun, since: l.now}
		}
		seen[s.Index] = mark
		end := mark.since.Add(grace)
		if s.TasksRun > 0 && end.After(l.now) {
			s.Lingering = true
			if l.lingerEnd.IsZero() || end.Before(l.lingerEnd) {
				l.lingerEnd = end
			}
		}
	}
	l.idle = seen
}
