package control

import (
	"fmt"
	"time"

	"github.com/lanterndata/lantern_async/bgworker"
	"github.com/lanterndata/lantern_async/bgworker/pgerr"
)

// Cluster is the dispatcher's view of PostgreSQL.
type Cluster interface {
	// Installed tells whether the extension exists in the database.
	Installed() (bool, error)
	// ReconcileNeeded is true once after each server start or crash.
	ReconcileNeeded() bool
	MarkReconciled()
	// Queues lists the roles with pending tasks, oldest task first.
	Queues() ([]RoleQueue, error)
	// Slots lists the worker slots in use.
	Slots() []Slot
	// Launch starts a worker for a role; false when none could be started now.
	Launch(roleID uint32) (bool, error)
	// Wake sets the latch of the worker in a slot: its role has tasks.
	Wake(slot int)
	// Retire asks the idle worker in a slot to exit.
	Retire(slot int)
	// Reap frees the slots of ended workers and tells how each ended.
	Reap() ([]Exit, error)
	// Settle moves tasks from one status to a final outcome, once; outcome's
	// JobID 0 means every task in that status that sel picks. Rows a user
	// holds locked are left for a later round, never waited for.
	Settle(sel Selection, from bgworker.Status, outcome bgworker.Outcome) (int64, error)
	// Wait sleeps until woken or the timeout passes; true means stop.
	Wait(timeout time.Duration) bool
	Capacity() int
}

// Selection narrows the tasks a Settle changes.
type Selection struct {
	RoleID  uint32 // only the tasks of the role with this OID; 0: every role
	Unowned bool   // only the rows that were not submitted through async_task
}

// Dispatcher runs rounds until asked to stop.
type Dispatcher struct {
	Cluster Cluster
	Log     bgworker.Logger
	Naptime time.Duration // fallback for a missed wake-up, e.g. after COMMIT PREPARED

	Backoff Backoff
	Now     func() time.Time

	// lost holds reaped tasks not yet marked failed: Reap reports each only
	// once, so they are kept until Settle succeeds.
	lost []Exit
}

// Run returns when the process is asked to stop.
func (d *Dispatcher) Run() {
	for {
		if err := d.round(); err != nil {
			d.Log.Logf("lantern_async dispatcher: %v", err)
		}
		if d.Cluster.Wait(d.nap()) {
			return
		}
	}
}

// nap is how long to sleep: the naptime, or less when a role's backoff
// ends sooner (a wake-up arrives at commit or when a worker ends anyway).
func (d *Dispatcher) nap() time.Duration {
	now := d.Now()
	if next, ok := d.Backoff.NextExpiry(now); ok && next.Sub(now) < d.Naptime {
		return max(next.Sub(now), time.Millisecond)
	}
	return d.Naptime
}

func (d *Dispatcher) round() error {
	c := d.Cluster
	if err := d.settleLost(); err != nil {
		return err
	}
	installed, err := c.Installed()
	if err != nil || !installed {
		return err
	}
	if c.ReconcileNeeded() {
		if err := d.reconcile(); err != nil {
			return err
		}
	}
	queues, err := c.Queues()
	if err != nil {
		return err
	}
	plan := PlanRound(d.launchable(queues), c.Slots(), c.Capacity())
	for _, q := range plan.Refuse {
		sel := Selection{RoleID: q.RoleID, Unowned: q.RoleID == 0}
		if _, err := c.Settle(sel, bgworker.Pending, failure(0, unrunnable(q))); err != nil {
			return err
		}
	}
	for _, slot := range plan.Wake {
		c.Wake(slot)
	}
	for _, slot := range plan.Retire {
		c.Retire(slot)
	}
	for _, roleID := range plan.Launch {
		if ok, err := c.Launch(roleID); err != nil || !ok {
			return err
		}
	}
	return nil
}

func (d *Dispatcher) settleLost() error {
	exits, err := d.Cluster.Reap()
	if err != nil {
		return err
	}
	for _, e := range exits {
		d.observe(e)
		if e.JobID != 0 {
			d.lost = append(d.lost, e)
		}
	}
	for len(d.lost) > 0 {
		if _, err := d.Cluster.Settle(Selection{}, bgworker.Running, lostOutcome(d.lost[0])); err != nil {
			return err
		}
		d.lost = d.lost[1:]
	}
	return nil
}

// lostOutcome is the outcome of the task a worker was running when it
// ended: canceled when cancel_task() had accepted to cancel it (its
// caller was told it would end canceled), failed otherwise.
func lostOutcome(e Exit) bgworker.Outcome {
	o := failure(e.JobID, workerLost())
	if e.Canceled {
		o = bgworker.CanceledOutcome(bgworker.Task{JobID: e.JobID})
	}
	o.Table = e.Table
	return o
}

func (d *Dispatcher) observe(e Exit) {
	d.Backoff.Observe(e, d.Now())
	if delay := d.Backoff.Delay(e.RoleID); delay > 0 {
		d.Log.Logf("lantern_async dispatcher: a worker for role %d ended without finishing a task; next launch for that role in %v", e.RoleID, delay)
	}
}

// launchable drops the roles whose workers keep failing to start.
func (d *Dispatcher) launchable(queues []RoleQueue) []RoleQueue {
	now := d.Now()
	kept := queues[:0:0]
	for _, q := range queues {
		if !d.Backoff.Waiting(q.RoleID, now) {
			kept = append(kept, q)
		}
	}
	return kept
}

// reconcile fails the tasks a previous server life left 'running': no
// process runs them any more, and their SQL may not be idempotent, so they
// are never re-run.
func (d *Dispatcher) reconcile() error {
	n, err := d.Cluster.Settle(Selection{}, bgworker.Running, failure(0, serverStopped()))
	if err != nil {
		return err
	}
	if n > 0 {
		d.Log.Logf("lantern_async: marked %d task(s) that were running when the server stopped as failed", n)
	}
	d.Cluster.MarkReconciled()
	return nil
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
