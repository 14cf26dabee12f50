package control

import (
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

// Launcher runs rounds until asked to stop: each round (round.go) reaps
// the processes that ended (reap.go), looks at the demands and the sweeps
// (sweep.go), plans (plan.go, plan_retire.go) and carries the plan out;
// then the launcher naps (nap.go) until something wakes it. Its state is
// the launcher process's own memory, used only by the goroutine in Run:
// no lock, and a launcher that restarts starts from nothing.
type Launcher struct {
	Cluster Cluster
	Log     bgworker.Logger
	// Naptime is the longest sleep between rounds: every wake-up is
	// explicit (a note on the demand board, a worker that went idle, a
	// process that started or ended) or comes sooner from the round itself
	// (nap), so this only bounds the damage of one that is missed.
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
	// IdleGrace is how long an idle worker lingers against other keys'
	// backlogs after a task (linger.go; 0: defaultIdleGrace).
	IdleGrace time.Duration

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
	// nextDue is when the earliest demand the last round held back as not
	// due yet falls due (zero: none held back).
	nextDue time.Time
	// idle holds, per slot index, when the worker there was first seen
	// idle; lingerEnd is when the earliest lingering ends (zero: none).
	idle      map[int]idleMark
	lingerEnd time.Time
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
