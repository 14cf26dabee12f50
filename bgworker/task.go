// Package bgworker is the loop of a lantern_async worker process: claim the
// oldest pending task of the worker's role, run it, reset the session,
// record the outcome. It never imports "C": the PostgreSQL side sits
// behind the Queue and Session interfaces, so it is tested with fakes.
//
// Task lifecycle (the status column of lantern.tasks):
//
//	pending ──claim──▶ running ──▶ succeeded
//	   ▲ │                  │ ├──▶ failed   (error, open transaction, worker lost, server stopped)
//	   │ └──cancel_task──▶ canceled ◀──cancel_task──┘
//	   └──── retry: a transient failure, nothing committed ──┘
//
// The final status, duration and error_message are written once, after
// the whole query string has finished; README.md says who writes each
// transition, and where.
package bgworker

import (
	"errors"
	"math"
	"time"

	"github.com/lanterndata/lantern_async/bgworker/pgerr"
)

// Status is the value of lantern.tasks.status.
type Status string

// The statuses a task goes through.
const (
	Pending   Status = "pending"
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Canceled  Status = "canceled"
)

// CanceledMessage is the error_message of a task stopped by lantern.cancel_task().
const CanceledMessage = "Canceled by user"

// queryCanceled is SQLSTATE 57014, raised by a cancel signal.
const queryCanceled = "57014"

// Task is a claimed row of lantern.tasks.
type Task struct {
	JobID int64
	Query string
	// Table is the OID of the lantern.tasks it was claimed from: its outcome
	// must not land in a table re-created since (DROP/CREATE EXTENSION
	// restarts the jobids).
	Table uint32
	// Timeout is the task's own time limit, the third argument of
	// lantern.async_task() (0: none given).
	Timeout time.Duration
	// Attempt is this attempt's number, from 1; Retries how many attempts
	// may follow the first after a transient failure (retries of
	// lantern.async_task()).
	Attempt int
	Retries int
}

// Limit is how long a task may run before it is stopped, counted from
// when its worker starts it.
type Limit struct {
	Duration time.Duration // 0: no limit
	// PerTask tells that the limit is the task's own timeout rather than
	// lantern_async.task_timeout (the error message says which).
	PerTask bool
}

// LimitOf is a task's limit: its own timeout when it has one, else the
// lantern_async.task_timeout setting of the session about to run it (0
// or less: none).
func LimitOf(task Task, setting time.Duration) Limit {
	if task.Timeout > 0 {
		return Limit{Duration: task.Timeout, PerTask: true}
	}
	if setting > 0 {
		return Limit{Duration: setting}
	}
	return Limit{}
}

// Microseconds converts a length in microseconds to a Duration, saturated
// at the largest one (about 292 years) rather than wrapping around.
func Microseconds(us int64) time.Duration {
	switch {
	case us > math.MaxInt64/int64(time.Microsecond):
		return math.MaxInt64
	case us < math.MinInt64/int64(time.Microsecond):
		return math.MinInt64
	}
	return time.Duration(us) * time.Microsecond
}

// Outcome is what gets recorded for a task once an attempt of it has
// finished: its final status, or Pending for a retry.
type Outcome struct {
	JobID    int64
	Table    uint32 // see Task.Table; 0 for any
	Status   Status
	Message  string // psql-style error text; empty on success
	SQLState string // empty on success
	// Attempt is the attempt's number for its row in lantern.task_attempts
	// (0: no row: the task has no retries), run from Started to Ended.
	Attempt        int
	Started, Ended time.Time
	// Due is when a retried task's next attempt may start (Status Pending).
	Due time.Time
}

// Attempted adds the attempt's row to an outcome, for a task submitted
// with retries.
func (o Outcome) Attempted(task Task, started, ended time.Time) Outcome {
	if task.Retries > 0 {
		o.Attempt, o.Started, o.Ended = task.Attempt, started, ended
	}
	return o
}

// Final is a retry's outcome made final, for when the retry cannot be
// recorded (the outcome is parked for a scout): the attempt's failure,
// saying why it was not retried.
func (o Outcome) Final(why string) Outcome {
	if o.Status == Pending {
		o.Status, o.Due = Failed, time.Time{}
		o.Message += "\nlantern_async did not retry the task: " + why
	}
	return o
}

// CanceledOutcome is the outcome of a task lantern.cancel_task() stopped.
func CanceledOutcome(task Task) Outcome {
	return Outcome{JobID: task.JobID, Table: task.Table, Status: Canceled, Message: CanceledMessage, SQLState: queryCanceled}
}

// OutcomeOf turns the result of running a task's query into its outcome.
func OutcomeOf(task Task, runErr error) Outcome {
	if runErr == nil {
		return Outcome{JobID: task.JobID, Table: task.Table, Status: Succeeded}
	}
	var pgErr *pgerr.Error
	if !errors.As(runErr, &pgErr) {
		pgErr = pgerr.New("XX000", runErr.Error())
	}
	return Outcome{
		JobID:    task.JobID,
		Table:    task.Table,
		Status:   Failed,
		Message:  pgErr.Psql(task.Query),
		SQLState: pgErr.Code,
	}
}
