package bgworker

import (
	"errors"
	"fmt"
	"time"
)

// ErrSettingsChanged is Claim's answer when the role's or the database's
// settings (ALTER ROLE / ALTER DATABASE ... SET) changed since the worker's
// session logged in: the claim recorded the outcome it was given and left
// the task pending, and the worker exits so that a new session, which logs
// in with the settings as they are, runs it.
var ErrSettingsChanged = errors.New("the role's or database's settings changed since the session logged in")

// Queue is lantern.tasks as one worker sees it: the pending tasks of its
// own role.
type Queue interface {
	// Claim marks the oldest pending task running and returns it; ok is
	// false when there is none. The claim is committed durably. A finished
	// outcome (nil: none) is recorded in the same commit, and its task
	// done, as Settle and Done would: one WAL flush instead of two. On an
	// error nothing changed, and finished is still to be recorded; except
	// ErrSettingsChanged, after which finished is recorded too.
	Claim(finished *Outcome) (task Task, ok bool, err error)
	// Settle records a running task's outcome, once. An error that
	// Blocked recognizes means the queue's table could not be locked in
	// time (a user's maintenance command waits for it): nothing changed,
	// and the call may be repeated.
	Settle(Outcome) error
	// Blocked tells whether an error of Settle was a lock timeout.
	Blocked(err error) bool
	// Park leaves an outcome that cannot be recorded now with the
	// worker's slot, for a scout of the database to record later; the
	// worker then exits and frees the slot for other work.
	Park(Outcome)
	// Finish closes the task to cancels, now that its outcome is being
	// decided, and tells whether lantern.cancel_task() had accepted one
	// before (rather than, say, an administrator's pg_cancel_backend()
	// stopping it): the task must then end canceled.
	Finish(jobID int64) (canceled bool)
	// Done tells the queue that the task's outcome is committed.
	Done(jobID int64)
}

// Session is the worker's own database session, where tasks run.
type Session interface {
	// Execute runs a task's query string like psql -c; a failure is a
	// *pgerr.Error. A task still running when limit passes is stopped
	// (a query cancel) and fails with an error that says so.
	Execute(task Task, limit Limit) (Result, error)
	// Reset discards all session state a task may have left behind.
	Reset() error
}

// Result is what Session.Execute tells besides the error.
type Result struct {
	// Recorded is true when the task's success was committed in the same
	// transaction as the end of its work, so there is nothing left to
	// Settle.
	Recorded bool
	// Committed is true when a transaction of the task committed work (or
	// was prepared): the task must not be run again from the start.
	Committed bool
}

// Logger writes to the server log.
type Logger interface {
	Logf(format string, args ...any)
}

// Worker runs tasks until its role has none left for IdleTimeout, or it
// is asked to stop or to give its slot up.
type Worker struct {
	// BlockedRetry is how long to wait before recording an outcome again
	// after the queue's table could not be locked.
	BlockedRetry time.Duration
	// BlockedGrace is how long a worker keeps trying to record an outcome
	// while the queue's table cannot be locked (autovacuum truncating it
	// holds the lock for a moment) before it parks the outcome and exits:
	// a lock request queued on the table can wait for as long as its
	// session likes, and the slot must not wait with it (0: park at once).
	BlockedGrace time.Duration

	Queue         Queue
	Session       Session
	StopRequested func() bool
	Log           Logger

	// IdleTimeout is how long a worker that ran out of tasks waits for more
	// of its role before it exits (0: it exits at once). A role that
	// submits one task at a time then keeps one process, instead of making
	// the server fork one per task. It is read each time the worker runs
	// out of tasks (a configuration reload may change it).
	IdleTimeout func() time.Duration
	// Wait sleeps until the worker is woken (a submit's commit sets its latch
	// when its role has tasks again) or the timeout passes; true means stop.
	Wait func(time.Duration) bool
	// Retiring tells whether the slot is wanted elsewhere: the launcher
	// needs it for other work, or a DROP DATABASE needs the database.
	Retiring func() bool
	// WentIdle is called when the worker ran out of tasks after running
	// one, before it waits idle (nil: nothing). The launcher gives a slot
	// to another role only once its worker has finished a task, and no
	// commit or process exit tells it when that happens: without this
	// call, a role waiting for that slot waits out IdleTimeout.
	WentIdle func()
	// TaskTimeout is lantern_async.task_timeout as the worker's session
	// sees it (its role's and database's settings, postgresql.conf; 0:
	// none), read as each task starts, after the previous task's reset:
	// the limit of a task without a timeout of its own.
	TaskTimeout func() time.Duration
	Now         func() time.Time
	// Jitter draws a retry's jitter, in [0, 1) (nil: at random).
	Jitter func() float64

	costs Costs
	// last holds the outcome runOne hands back, so that none is allocated per task.
	last Outcome
}

// Run loops until no task has come for IdleTimeout (nil) or something is
// broken (an error: the process should exit and let the launcher start
// a fresh one).
func (w *Worker) Run() error {
	start := w.now()
	st := runState{idleSince: start}
	defer func() { w.costs.Busy += w.since(start) - st.idle }()
	for !w.checked(w.StopRequested) {
		if w.Retiring != nil && w.checked(w.Retiring) {
			break
		}
		if done, err := w.step(&st); done {
			return err
		}
	}
	_, err := w.flush(st.finished)
	return err
}

// runState is what Run carries from one claim to the next.
type runState struct {
	// finished is the outcome of the last task, when its own commit did not
	// record it: it goes in with the next claim, or alone before the worker
	// exits.
	finished  *Outcome
	idleSince time.Time     // when the last task ended (or the worker started)
	ran       bool          // a task ran since the last idle wait
	idle      time.Duration // spent in idle waits, left out of Costs.Busy
}

// step claims once and acts on what the claim found: a task to run,
// nothing (wait for more), or an error. done means Run returns err at
// once, the finished outcome dealt with.
func (w *Worker) step(st *runState) (done bool, err error) {
	task, ok, err := w.claim(st.finished)
	if errors.Is(err, ErrSettingsChanged) {
		return true, nil
	}
	blocked := err != nil && w.Queue.Blocked(err)
	if err != nil && !blocked {
		// The claim changed nothing, its slot names the finished task
		// again (la_bk_claim): record that outcome before leaving.
		if _, ferr := w.flush(st.finished); ferr != nil {
			return true, fmt.Errorf("could not claim a task: %w; %w", err, ferr)
		}
		return true, fmt.Errorf("could not claim a task: %w", err)
	}
	if blocked && st.finished != nil {
		// Alone, with its own retries: it must not wait for the claim.
		if parked, err := w.flush(st.finished); parked || err != nil {
			return true, err
		}
		st.finished = nil
		return false, nil
	}
	st.finished = nil
	if !ok {
		return w.waitIdle(st, blocked), nil
	}
	finished, resetErr := w.runOne(task)
	if resetErr != nil {
		if _, err := w.flush(finished); err != nil {
			return true, err
		}
		return true, resetErr
	}
	st.finished, st.idleSince, st.ran = finished, w.now(), true
	return false, nil
}

// waitIdle waits for more tasks after a claim found none; done means the
// worker leaves (the idle timeout passed, or it must stop). Woken or not,
// it looks again: a wake-up that came before this wait left the latch
// set, so none is lost. A claim that could not lock the queue's table
// (blocked: autovacuum truncating it, a user's VACUUM FULL) is tried
// again soon, within the idle timeout as well.
func (w *Worker) waitIdle(st *runState, blocked bool) (done bool) {
	left := w.idleTimeout() - w.now().Sub(st.idleSince)
	if blocked {
		left = min(left, w.BlockedRetry)
	}
	if left <= 0 || w.Wait == nil {
		return true
	}
	if st.ran && w.WentIdle != nil {
		w.WentIdle()
	}
	st.ran = false
	t0 := w.now()
	stop := w.Wait(left)
	st.idle += w.since(t0)
	return stop
}

func (w *Worker) claim(finished *Outcome) (Task, bool, error) {
	t0 := w.now()
	defer func() { w.costs.Claims++; w.costs.Claim += w.since(t0) }()
	return w.Queue.Claim(finished)
}

// checked calls a stop or retire check, counting its cost.
func (w *Worker) checked(check func() bool) bool {
	t0 := w.now()
	yes := check()
	w.costs.Checks++
	w.costs.Check += w.since(t0)
	return yes
}

func (w *Worker) since(t0 time.Time) time.Duration { return w.now().Sub(t0) }

// idleTimeout is 0 (exit at once) when none is set.
func (w *Worker) idleTimeout() time.Duration {
	if w.IdleTimeout == nil {
		return 0
	}
	return w.IdleTimeout()
}

// taskTimeout is 0 (no limit) when none is set.
func (w *Worker) taskTimeout() time.Duration {
	if w.TaskTimeout == nil {
		return 0
	}
	return w.TaskTimeout()
}

func (w *Worker) now() time.Time {
	if w.Now == nil {
		return time.Now()
	}
	return w.Now()
}

// runOne keeps the order execute → reset → record: the task's settings
// must never affect the bookkeeping that records it. (A success recorded
// with the task's own commit ran with pinned settings of its own.) It
// returns the outcome still to record, nil when the task's commit did,
// and the reset's error (the worker must then exit, once the outcome is
// recorded).
func (w *Worker) runOne(task Task) (*Outcome, error) {
	limit := LimitOf(task, w.taskTimeout())
	t0 := w.now()
	result, execErr := w.Session.Execute(task, limit)
	t1 := w.now()
	w.costs.Tasks++
	w.costs.Execute += t1.Sub(t0)
	outcome := w.retryOrFinal(task, OutcomeOf(task, execErr), result.Committed)
	if w.Queue.Finish(task.JobID) {
		outcome = CanceledOutcome(task)
	}
	outcome = outcome.Attempted(task, t0, t1)
	resetErr := w.Session.Reset()
	w.costs.Reset += w.since(t1)
	if resetErr != nil {
		resetErr = fmt.Errorf("could not reset the session after task %d: %w", task.JobID, resetErr)
	}
	if result.Recorded {
		w.Queue.Done(task.JobID)
		return nil, resetErr
	}
	w.last = outcome
	return &w.last, resetErr
}
