package control

import "time"

// Limiter caps how fast the dispatcher starts workers for one role: a
// burst, then one launch per Interval (a generic cell rate algorithm).
// Every launch forks a process that starts a Go runtime, so a role that
// submits one trivial task at a time, as fast as it can, must not make the
// server fork as fast as it can; its tasks wait a little and run in batches
// instead. Roles never hold each other back.
type Limiter struct {
	Burst    int
	Interval time.Duration
	tat      map[uint32]time.Time // theoretical arrival time per role
}

// Allow takes a launch for roleID at now, if one is available.
func (l *Limiter) Allow(roleID uint32, now time.Time) bool {
	if l.Interval <= 0 {
		return true
	}
	if l.tat == nil {
		l.tat = make(map[uint32]time.Time)
	}
	if now.Before(l.next(roleID)) {
		return false
	}
	l.tat[roleID] = later(l.tat[roleID], now).Add(l.Interval)
	return true
}

// Next is when roleID may launch again.
func (l *Limiter) Next(roleID uint32) time.Time {
	return l.next(roleID)
}

func (l *Limiter) next(roleID uint32) time.Time {
	return l.tat[roleID].Add(-time.Duration(max(l.Burst-1, 0)) * l.Interval)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
