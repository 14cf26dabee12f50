package control

import (
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
	// Reap frees the slots of ended workers and tells how each ended.
	Reap() []Exit
	// Settle moves tasks from one status to a final outcome (see bgworker.Queue);
	// JobID 0 means every task in that status, username "" every role.
	Settle(username string, from bgworker.Status, outcome bgworker.Outcome) (int64, error)
	// Wait sleeps until woken or the timeout passes; true means stop.
	Wait(timeout time.Duration) bool
	Capacity() int
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
		if d.Cluster.Wait(d.Naptime) {
			return
		}
	}
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
		if _, err := c.Settle(q.Username, bgworker.Pending, failure(0, roleUnusable(q))); err != nil {
			return err
		}
	}
	for _, roleID := range plan.Launch {
		if ok, err := c.Launch(roleID); err != nil || !ok {
			return err
		}
	}
	return nil
}

func (d *Dispatcher) settleLost() error {
	for _, e := range d.Cluster.Reap() {
		d.observe(e)
		if e.JobID != 0 {
			d.lost = append(d.lost, e)
		}
	}
	for len(d.lost) > 0 {
		lost := failure(d.lost[0].JobID, workerLost())
		lost.Table = d.lost[0].Table
		if _, err := d.Cluster.Settle("", bgworker.Running, lost); err != nil {
			return err
		}
		d.lost = d.lost[1:]
	}
	return nil
}

func (d *Dispatcher) observe(e Exit) {
	d.Backoff.Observe(e, d.Now())
	if delay := d.Backoff.Delay(e.RoleID); delay > 0 {
		d.Log.Logf("lantern_async dispatcher: a worker for role %d ended before it could run a task; next launch for that role in %v", e.RoleID, delay)
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
	n, err := d.Cluster.Settle("", bgworker.Running, failure(0, serverStopped()))
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

func roleUnusable(q RoleQueue) *pgerr.Error {
	if q.RoleID == 0 {
		e := pgerr.New("42704", `role "`+q.Username+`" does not exist`)
		e.Detail = "The role that submitted this task was dropped or renamed before the task could run."
		return e
	}
	e := pgerr.New("28000", `role "`+q.Username+`" is not permitted to log in`)
	e.Detail = "A task runs in a session of the role that submitted it, and the role lost the LOGIN attribute before the task could run."
	e.Hint = `Grant LOGIN to the role and submit the task again.`
	return e
}
