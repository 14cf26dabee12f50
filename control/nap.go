package control

import "time"

// nap is how long to sleep after the round's instant: the naptime, or
// less when something the round held back ends sooner and nobody would
// wake the launcher for it: an idle worker's lingering (linger.go), a
// DROP/ALTER/CREATE DATABASE's block
// (BlockedRecheck), a refused launch (LaunchRetry), a key's backoff, a
// database's scout rest, or a demand not due yet (a note of earlier work
// wakes the launcher, and its round naps anew).
func (l *Launcher) nap() time.Duration {
	now := l.now
	nap := l.Naptime
	// After(now): a round that failed before it read the board left the
	// last round's nextDue, which may be past.
	if l.nextDue.After(now) && l.nextDue.Sub(now) < nap {
		nap = l.nextDue.Sub(now)
	}
	if l.lingerEnd.After(now) && l.lingerEnd.Sub(now) < nap {
		nap = l.lingerEnd.Sub(now) // an idle worker may give way then
	}
	if l.blocked && l.BlockedRecheck < nap {
		nap = l.BlockedRecheck
	}
	if l.refused && l.LaunchRetry < nap {
		nap = l.LaunchRetry
	}
	if next, ok := l.Backoff.NextExpiry(now); ok && next.Sub(now) < nap {
		nap = next.Sub(now)
	}
	for db, at := range l.scouted {
		rest := at.Add(l.ScoutRest).Sub(now)
		if rest <= 0 {
			delete(l.scouted, db) // over: a sweep leaves no trail to walk every round
		} else if rest < nap {
			nap = rest
		}
	}
	return max(nap, time.Millisecond)
}

// resting tells whether a database's last scout started too recently for
// another; a rest that is over is forgotten.
func (l *Launcher) resting(k Key, now time.Time) bool {
	at, ok := l.scouted[k.DB]
	if ok && !now.Before(at.Add(l.ScoutRest)) {
		delete(l.scouted, k.DB)
		return false
	}
	return ok && k.Scout()
}
