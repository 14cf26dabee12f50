package control

import (
	"fmt"
	"time"

	"github.com/lanterndata/lantern_async/bgworker"
	"github.com/lanterndata/lantern_async/bgworker/pgerr"
)

// RoleQueue summarizes the pending tasks of one role in the scout's
// database, followed by OID.
type RoleQueue struct {
	RoleID     uint32 // from lantern.task_owners; 0 for rows that have none
	Username   string // the name the tasks were submitted under
	RoleExists bool   // a role with that OID still exists
	CanLogin   bool
	OldestJob  int64
	Pending    int64
	Due        time.Time // when the earliest of them may start; the zero time: now
}

// runnable tells whether a worker can run this queue's tasks.
func (q RoleQueue) runnable() bool {
	return q.RoleID != 0 && q.RoleExists && q.CanLogin
}

// Selection narrows the tasks a Settle changes.
type Selection struct {
	RoleID  uint32 // only the tasks of the role with this OID; 0: every role
	Unowned bool   // only the rows that were not submitted through async_task
	// WaitForLocks waits for a row another transaction holds instead of
	// leaving it for a later sweep. Only for 'running' rows: no ordinary
	// role can lock those (locking a row needs UPDATE on lantern.tasks,
	// which nobody is granted, and cancel_task() never locks a running
	// task), so only a superuser could make a scout wait.
	WaitForLocks bool
}

// CopiedQueue counts the unfinished tasks in the scout's database that were
// submitted in another one: their rows came with a copy of that database
// (CREATE DATABASE ... TEMPLATE). They never run here.
type CopiedQueue struct {
	DB         uint32 // the database they were submitted in, by OID
	Name       string // its name, when it still exists
	Exists     bool
	Unfinished int64
}

// LostTask is a task whose worker ended while running it.
type LostTask struct {
	JobID    int64
	Table    uint32
	Canceled bool
	// Parked is the outcome the worker could not record (the queue's table
	// could not be locked) and left for a scout; nil when it died instead.
	Parked *bgworker.Outcome
}

// Site is a scout's view of its database.
type Site interface {
	// Installed tells whether the extension exists here (at a version the
	// library can serve).
	Installed() (bool, error)
	// Lost lists this database's tasks whose worker ended while running
	// them; Found removes one once it is settled.
	Lost() []LostTask
	Found(LostTask)
	// Settle moves tasks from one status to a final outcome, once;
	// outcome's JobID 0 means every task in that status that sel picks.
	// Rows a user holds locked are left for a later sweep, never waited
	// for, unless sel.WaitForLocks.
	Settle(sel Selection, from bgworker.Status, outcome bgworker.Outcome) (int64, error)
	// Copied lists the other databases that unfinished tasks here were
	// submitted in; FailCopied settles those tasks in status from (every
	// one that db recorded), leaving rows a user holds locked for a later
	// sweep.
	Copied() ([]CopiedQueue, error)
	FailCopied(db uint32, from bgworker.Status, outcome bgworker.Outcome) (int64, error)
	// FailOrphans fails the tasks 'running' that no live process runs.
	FailOrphans(outcome bgworker.Outcome) (int64, error)
	// Queues lists the roles with pending tasks, oldest task first.
	Queues() ([]RoleQueue, error)
	// Note puts a role's pending tasks on the demand board, due at due
	// (the zero time: now).
	Note(roleID uint32, pending int64, due time.Time)
	// Looking marks the scout's own demand looked at (before the sweep
	// reads anything); Settled removes it, false when a new request came
	// meanwhile (then sweep again).
	Looking()
	Settled() bool
	// Retiring tells whether the scout must leave (its database is being
	// dropped, renamed, moved or copied).
	Retiring() bool
	// ExpireHistory deletes one small batch of the finished tasks that
	// lantern_async.history_retention no longer keeps (none without one);
	// more is true when there may be more.
	ExpireHistory() (deleted int64, more bool, err error)
	// NoteHistory tells the launcher when the next finished tasks here fall due.
	NoteHistory() error
}

// Scout sweeps one database: it settles what can never run or was left
// running, and notes on the demand board the roles that have tasks.
type Scout struct {
	Site Site
	Log  bgworker.Logger
	// StartSweep is set for the first sweep after a server start: tasks
	// still 'running' then were running when the server stopped.
	StartSweep bool
}

// Run sweeps until no request for this database is left; swept is false
// when the scout was asked to leave first (its database is being dropped,
// renamed, moved or copied): its work is still to do, and the launcher
// must not take its exit for the end of a start sweep.
func (s *Scout) Run() (swept bool, err error) {
	for !s.Site.Retiring() {
		s.Site.Looking()
		if err := s.sweep(); err != nil {
			return false, err
		}
		if s.Site.Settled() {
			return true, nil
		}
		s.StartSweep = false
	}
	return false, nil
}

func (s *Scout) sweep() error {
	installed, err := s.Site.Installed()
	if err != nil {
		return err
	}
	if !installed {
		// Nothing to delete here now: the launcher stops counting on this
		// database's history (else, with the extension dropped, it would
		// send a scout every second for good).
		return s.Site.NoteHistory()
	}
	if err := s.settleLost(); err != nil {
		return err
	}
	// Before the orphans: a copied 'running' row was never running here,
	// and must say so rather than "the server stopped".
	if err := s.failCopied(); err != nil {
		return err
	}
	if err := s.failOrphans(); err != nil {
		return err
	}
	if err := s.noteQueues(); err != nil {
		return err
	}
	return s.expireHistory()
}

// expireHistory deletes what the retention no longer keeps, a batch per
// transaction, and leaves the database at once when it must.
func (s *Scout) expireHistory() error {
	var total int64
	for {
		n, more, err := s.Site.ExpireHistory()
		if err != nil {
			return err
		}
		total += n
		if !more || s.Site.Retiring() {
			break
		}
	}
	if total > 0 {
		s.Log.Logf("lantern_async: deleted %d finished task(s) older than lantern_async.history_retention", total)
	}
	return s.Site.NoteHistory()
}

// settleLost waits for a lost task's row if it must: otherwise a row
// skipped as locked would be taken for one that had finished, and the task
// would lose its accepted cancel (it would end failed, by failOrphans).
func (s *Scout) settleLost() error {
	for _, t := range s.Site.Lost() {
		if _, err := s.Site.Settle(Selection{WaitForLocks: true}, bgworker.Running, lostOutcome(t)); err != nil {
			return err
		}
		s.Site.Found(t) // settled now, or it had finished: nothing changed
	}
	return nil
}

// failOrphans fails the tasks no process runs any more: left by a previous
// server life, or by a worker that ended and whose task the lost list
// could not hold. Their SQL may not be idempotent, so they never re-run.
func (s *Scout) failOrphans() error {
	why := workerLost()
	if s.StartSweep {
		why = serverStopped()
	}
	n, err := s.Site.FailOrphans(failure(0, why))
	if err == nil && n > 0 {
		s.Log.Logf("lantern_async: marked %d task(s) that were running when %s as failed", n, orphanCause(s.StartSweep))
	}
	return err
}

// failCopied ends the tasks whose rows came with a copy of the database
// they were submitted in: they run only there, once (README, "Crashes and
// restarts").
func (s *Scout) failCopied() error {
	copies, err := s.Site.Copied()
	if err != nil {
		return err
	}
	for _, c := range copies {
		var total int64
		for _, from := range []bgworker.Status{bgworker.Pending, bgworker.Running} {
			n, err := s.Site.FailCopied(c.DB, from, failure(0, submittedElsewhere(c)))
			if err != nil {
				return err
			}
			total += n
		}
		if total > 0 {
			s.Log.Logf("lantern_async: marked %d task(s) submitted in %s as failed: this database holds a copy of their rows",
				total, databaseName(c))
		}
	}
	return nil
}

func databaseName(c CopiedQueue) string {
	if c.Exists {
		return fmt.Sprintf(`database "%s"`, c.Name)
	}
	return fmt.Sprintf("the database with OID %d, which no longer exists", c.DB)
}

// copiedSQLState is object_not_in_prerequisite_state: the task is fine,
// this database is not where it may run.
const copiedSQLState = "55000"

func submittedElsewhere(c CopiedQueue) *pgerr.Error {
	e := pgerr.New(copiedSQLState, "this task was submitted in another database")
	if c.Exists {
		e.Detail = fmt.Sprintf(`The task belongs to database "%s" (OID %d). This database holds a copy of its row (made by CREATE DATABASE ... TEMPLATE, for example), and a task runs only in the database it was submitted in.`, c.Name, c.DB)
	} else {
		e.Detail = fmt.Sprintf(`The task belongs to the database with OID %d, which no longer exists. This database holds a copy of its row (made by CREATE DATABASE ... TEMPLATE, for example), and a task runs only in the database it was submitted in.`, c.DB)
	}
	e.Hint = "Submit the task again in this database if it should run here."
	return e
}

func orphanCause(start bool) string {
	if start {
		return "the server stopped"
	}
	return "their process exited"
}

// noteQueues fails the tasks that can never run and puts the others on
// the demand board, due when the earliest of each role's may start.
func (s *Scout) noteQueues() error {
	queues, err := s.Site.Queues()
	if err != nil {
		return err
	}
	for _, q := range queues {
		if q.runnable() {
			s.Site.Note(q.RoleID, q.Pending, q.Due)
			continue
		}
		sel := Selection{RoleID: q.RoleID, Unowned: q.RoleID == 0}
		if _, err := s.Site.Settle(sel, bgworker.Pending, failure(0, unrunnable(q))); err != nil {
			return err
		}
	}
	return nil
}

// lostOutcome is the outcome of a task whose worker ended while running
// it: the one it parked, if it did (its worker decided it, cancels
// included); canceled when cancel_task() had accepted to cancel it (its
// caller was told it would end canceled); failed otherwise.
func lostOutcome(t LostTask) bgworker.Outcome {
	o := failure(t.JobID, workerLost())
	if t.Parked != nil {
		o = *t.Parked
		o.JobID = t.JobID
	} else if t.Canceled {
		o = bgworker.CanceledOutcome(bgworker.Task{JobID: t.JobID})
	}
	o.Table = t.Table
	return o
}

func failure(jobID int64, e *pgerr.Error) bgworker.Outcome {
	return bgworker.Outcome{JobID: jobID, Status: bgworker.Failed, Message: e.Psql(""), SQLState: e.Code}
}

func workerLost() *pgerr.Error {
	e := pgerr.New("57P01", "the process running this task exited before the task finished")
	e.Detail = "The task's query terminated its own process, or the process was stopped or failed. Its work was rolled back where it had not committed."
	e.Hint = "See the server log for why the process exited."
	return e
}

func serverStopped() *pgerr.Error {
	e := pgerr.New("57P01", "the server stopped while this task was running")
	e.Detail = "The task was not run again after the restart, because its query may not be safe to repeat."
	e.Hint = "Submit the task again if it should still run."
	return e
}

func unrunnable(q RoleQueue) *pgerr.Error {
	switch {
	case q.RoleID == 0:
		e := pgerr.New("42501", "this task was not submitted through lantern.async_task()")
		e.Detail = "Only tasks queued by lantern.async_task() record the role they run as; rows inserted any other way never run."
		e.Hint = "Submit the query with lantern.async_task()."
		return e
	case !q.RoleExists:
		e := pgerr.New("42704", "the role that submitted this task no longer exists")
		e.Detail = fmt.Sprintf(`Role %q (OID %d) was dropped before the task could run; a role created later under the same name is a different role.`, q.Username, q.RoleID)
		return e
	default:
		e := pgerr.New("28000", fmt.Sprintf(`role %q is not permitted to log in`, q.Username))
		e.Detail = "A task runs in a session of the role that submitted it, and the role lost the LOGIN attribute before the task could run."
		e.Hint = `Grant LOGIN to the role and submit the task again.`
		return e
	}
}
