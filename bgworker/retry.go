package bgworker

import (
	"math/rand/v2"
	"time"
)

// The failures a task is retried after, when it was submitted with
// retries and none of its transactions has committed: the ones that say
// "the same statements may well succeed if run again", and nothing about
// the statements themselves.
//
//   - 40001 serialization_failure: a concurrent transaction won.
//   - 40P01 deadlock_detected: PostgreSQL chose this transaction to break a cycle.
//   - 55P03 lock_not_available: lock_timeout passed, or NOWAIT found the lock
//     taken; whoever holds it may be gone at the next attempt.
//
// A cancel (57014: lantern.cancel_task(), the task's timeout or
// lantern_async.task_timeout, statement_timeout, an administrator's
// pg_cancel_backend()) is never retried: somebody wanted the task stopped.
var retryable = map[string]bool{
	"40001": true,
	"40P01": true,
	"55P03": true,
}

// Backoff: the first retry about FirstBackoff after the failure, each
// later one twice as long, at most MaxBackoff, each drawn from ±25 %
// around that (jitter, so that tasks that failed together do not retry in
// step).
const (
	FirstBackoff = time.Second
	MaxBackoff   = 5 * time.Minute
)

// Backoff is the wait before the attempt that follows attempt (from 1),
// with jitter in [0, 1) drawing it from [0.75, 1.25) of the nominal wait:
// 1 s, 2 s, 4 s, ... 256 s, then 300 s for every later one.
func Backoff(attempt int, jitter float64) time.Duration {
	wait := MaxBackoff
	if attempt < 20 {
		wait = min(FirstBackoff<<max(attempt-1, 0), MaxBackoff)
	}
	return time.Duration(float64(wait) * (0.75 + 0.5*jitter))
}

// notRetriedCommitted ends the error of a task that would have been retried
// but had committed part of its work.
const notRetriedCommitted = "\nlantern_async did not retry the task: a transaction of it had committed, " +
	"and running it again would repeat that work"

// retryOrFinal decides what a failed attempt comes to: the task pending
// again, due after its backoff, or the failure as final. committed tells
// whether a transaction of the attempt committed work.
func (w *Worker) retryOrFinal(task Task, failed Outcome, committed bool) Outcome {
	if failed.Status != Failed || !retryable[failed.SQLState] || task.Attempt > task.Retries {
		return failed
	}
	if committed {
		failed.Message += notRetriedCommitted
		return failed
	}
	failed.Status = Pending
	failed.Due = w.now().Add(Backoff(task.Attempt, w.jitter()))
	return failed
}

func (w *Worker) jitter() float64 {
	if w.Jitter == nil {
		return rand.Float64()
	}
	return w.Jitter()
}
