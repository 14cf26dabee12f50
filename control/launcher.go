package control

import (
	"fmt"
	"sort"
	"time"

	"github.com/lanterndata/lantern_async/bgworker"
)

// Verdict is what the catalogs say about a demand's database and role.
type Verdict int

const (
	Runnable        Verdict = iota
	DatabaseGone            // dropped, or no longer accepts connections
	DatabaseBlocked         // a DROP/ALTER/CREATE DATABASE needs it to itself right now
	RoleUnrunnable          // the role was dropped or cannot log in: a scout fails its tasks
)

// Cluster is the launcher's view of PostgreSQL: shared memory and the
// shared catalogs, no database.
type Cluster interface {
	// Databases lists every database that accepts connections.
	Databases() ([]uint32, error)
	// Demands reads the demand board.
	Demands() []Demand
	// TakeOverflow is true once after a submit found the board full.
	TakeOverflow() bool
	// Check tells, for each key, whether its demand can be served now
	// (one look at the catalogs for the whole round).
	Check(keys []Key) ([]Verdict, error)
	// Note puts a demand on the board (for a scout: Role 0).
	Note(k Key)
	// Forget removes a demand nobody can serve; ForgetDatabase every trace
	// of a database that is gone.
	Forget(k Key)
	ForgetDatabase(db uint32)
	// ReconcileNeeded is true once after each server start or crash.
	ReconcileNeeded() bool
	MarkReconciled()
	// Slots lists the slots in use.
	Slots() []Slot
	// Launch starts a process for a key into a free slot (a scout's first
	// sweep after a start with startSweep); false when none could start now.
	Launch(k Key, startSweep bool) (bool, error)
	// Wake sets an idle worker's latch; Retire asks it to leave.
	Wake(slot int)
	Retire(slot int)
	// Reap frees the slots of ended processes and tells how each ended.
	Reap() ([]Exit, error)
	// Lost hands a task whose worker ended while running it to the scouts.
	Lost(e Exit)
	// History takes what the history inbox gathered since the last call
	// (see History), and whether it overflowed meanwhile (then every
	// database needs a scout).
	History() ([]HistoryNote, bool)
	// HistoryRetention is lantern_async.history_retention (0: keep all).
	HistoryRetention() time.Duration
	// Wait sleeps until woken or the timeout passes; true means stop.
	Wait(timeout time.Duration) bool
	Capacity() int
}

// Launcher runs rounds until asked to stop.
type Launcher struct {
	Cluster Cluster
	Log     bgworker.Logger
	// Naptime is the longest sleep between rounds: every wake-up is
	// explicit (a commit, a process that ended, a database unblocked), so
	// this only bounds the damage of one that is missed.
	Naptime time.Duration
	// BlockedRecheck is how soon to look again while a demand's database
	// is blocked by a DROP/ALTER/CREATE DATABASE: nobody wakes the
	// launcher when a block ends.
	BlockedRecheck time.Duration
	// ScoutRest is the least time between two scouts of one database:
	// however often users ask for sweeps (COMMIT PREPARED, say), the
	// server does not fork for them more often than this.
	ScoutRest time.Duration
	// LaunchRetry is how soon to try again after a launch was refused (no
	// background worker process free, or a database block that began
	// after the round's look at the catalogs): nobody wakes the launcher
	// when that changes.
	LaunchRetry time.Duration

	Backoff Backoff
	Now     func() time.Time

	// history says when each database's finished tasks fall due
	// (RetryAfter 0: a minute).
	history History
	// startSweep holds the databases whose first sweep since the server
	// started has not finished: their tasks left 'running' are from before.
	startSweep map[uint32]bool
	// served is, per key, the launch count when a process was last started
	// for it (Demand.Served): keys that share slots take turns.
	served   map[Key]uint64
	launches uint64
	// overflowed says what overflowed (the board, the history inbox) since
	// the last sweep was planned; "" when nothing did.
	overflowed string
	// overflowLogged: an overflow was logged since the sweep queue was
	// last empty (one line per sweep, however often it overflows).
	overflowLogged bool
	// sweep holds the databases a sweep of every database has still to
	// scout: any number, outside the board (see sweepQueue).
	sweep sweepQueue
	// due holds the databases whose finished tasks fall due for deletion
	// (history): their scouts are ordinary demands, kept off the board too.
	due sweepQueue
	// begun: the first round has put its sweep in the queue.
	begun bool
	// scouted is when the last scout of each database was started.
	scouted map[uint32]time.Time
	// blocked: a demand was blocked in the last round.
	blocked bool
	// refused: the last round's plan stopped at a launch that was refused.
	refused bool
	// now is the instant the round decides at, and the nap counts from it:
	// a backoff or rest that held a demand back then ends after it, so the
	// nap covers its end even when that comes before the round's own end
	// (measured from the round's end, it would be over, and the nap 10 s).
	now time.Time
}

// Run returns when the process is asked to stop.
func (l *Launcher) Run() {
	l.init()
	for {
		if err := l.round(); err != nil {
			l.Log.Logf("lantern_async launcher: %v", err)
		}
		if l.Cluster.Wait(l.nap()) {
			return
		}
	}
}

func (l *Launcher) init() {
	l.startSweep = make(map[uint32]bool)
	l.served = make(map[Key]uint64)
	l.scouted = make(map[uint32]time.Time)
	l.sweep.init()
	l.due.init()
	if l.history.RetryAfter == 0 {
		l.history.RetryAfter = time.Minute
	}
}

// nap is how long to sleep after the round's instant: the naptime, or
// less when a backoff or a scout's rest ends sooner.
func (l *Launcher) nap() time.Duration {
	now := l.now
	nap := l.Naptime
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

func (l *Launcher) round() error {
	c := l.Cluster
	l.now = l.Now()
	l.refused = false
	if err := l.reap(); err != nil {
		return err
	}
	l.takeHistory()
	if err := l.sweepIfNeeded(); err != nil {
		return err
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
		return err
	}
	housekeeping, err := l.sweepCandidates(&l.due, demands, slots, c.Capacity(), false)
	if err != nil {
		return err
	}
	demands = append(demands, housekeeping...)
	background, err := l.sweepCandidates(&l.sweep, demands, slots, c.Capacity(), true)
	if err != nil {
		return err
	}
	demands = append(demands, background...)
	l.markServed(demands, slots)
	plan := PlanRound(demands, slots, c.Capacity())
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
		l.launches++
		l.served[k] = l.launches
		if k.Scout() {
			l.scouted[k.DB] = l.Now()
			l.sweep.started(k.DB) // whichever way it was asked for, it sweeps
			l.due.started(k.DB)
		}
	}
	return nil
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

// reap learns how processes ended. A task whose worker ended while running
// it goes to a scout of its database; so does a database whose last
// worker just finished its work, for the housekeeping only a scout does
// (rows that were never submitted through async_task).
func (l *Launcher) reap() error {
	exits, err := l.Cluster.Reap()
	if err != nil {
		return err
	}
	slots := l.Cluster.Slots()
	for _, e := range exits {
		l.observe(e)
		if e.Scout() {
			l.sweep.ended(e.DB, e.Clean)
			l.due.ended(e.DB, e.Clean)
		}
		switch {
		case e.Scout() && e.Clean:
			delete(l.startSweep, e.DB)
		case e.JobID != 0:
			if !e.Parked { // a parked outcome is in the lost list already
				l.Cluster.Lost(e)
			}
			l.Cluster.Note(Key{DB: e.DB})
		case e.TasksRun > 0 && !databaseBusy(slots, e.DB):
			l.Cluster.Note(Key{DB: e.DB})
		}
	}
	return nil
}

func databaseBusy(slots []Slot, db uint32) bool {
	for _, s := range slots {
		if s.DB == db {
			return true
		}
	}
	return false
}

func (l *Launcher) observe(e Exit) {
	l.Backoff.Observe(e, l.now)
	if delay := l.Backoff.Delay(e.Key); delay > 0 {
		l.Log.Logf("lantern_async launcher: a %s for database %d ended without doing its work; next launch in %v",
			processName(e.Key), e.DB, delay)
	}
}

func processName(k Key) string {
	if k.Scout() {
		return "scout"
	}
	return fmt.Sprintf("worker of role %d", k.Role)
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
		switch verdicts[i] {
		case DatabaseGone:
			l.forgetDatabase(k.DB)
		case DatabaseBlocked:
			l.blocked = true
		default:
			picked = append(picked, Demand{Key: k, Background: background})
		}
	}
	return picked, nil
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

// servable keeps the demands that can be served now, oldest first, and
// settles the others: a database gone is forgotten; a role that can no
// longer run its tasks is handed to a scout, which fails them.
func (l *Launcher) servable(demands []Demand) ([]Demand, error) {
	sort.Slice(demands, func(a, b int) bool { return demands[a].Seq < demands[b].Seq })
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
		switch verdicts[i] {
		case DatabaseGone:
			l.forgetDatabase(d.DB)
		case DatabaseBlocked:
			l.blocked = true
		case RoleUnrunnable:
			l.Cluster.Forget(d.Key)
			l.Cluster.Note(Key{DB: d.DB})
		case Runnable:
			if !l.Backoff.Waiting(d.Key, now) && !l.resting(d.Key, now) {
				kept = append(kept, d)
			}
		}
	}
	return kept, nil
}
