package bgworker

import (
	"fmt"
	"time"
)

// flush records an outcome that no claim will take (nil: none) and marks
// its task done; parked means it was left with the slot instead.
func (w *Worker) flush(o *Outcome) (parked bool, err error) {
	if o == nil {
		return false, nil
	}
	t0 := w.now()
	parked, err = w.record(*o)
	w.costs.Records++
	w.costs.Record += w.since(t0)
	if err != nil {
		return false, fmt.Errorf("could not record the outcome of task %d: %w", o.JobID, err)
	}
	if !parked {
		w.Queue.Done(o.JobID)
	}
	return parked, nil
}

// record settles an outcome. While the queue's table cannot be locked (a
// lock request queued on it behind an open transaction, say), it tries
// again every BlockedRetry for BlockedGrace at most, and at once parks the
// outcome when the slot is wanted for other work or the worker must stop:
// parked means the outcome was left with the slot, for a scout, so that no
// user's lock keeps a slot from the rest of the cluster. The tries are not
// logged (one line when it parks).
func (w *Worker) record(outcome Outcome) (parked bool, err error) {
	var since time.Time
	for tries := 0; ; tries++ {
		err := w.Queue.Settle(outcome)
		if err == nil || !w.Queue.Blocked(err) {
			return false, err
		}
		if tries == 0 {
			since = w.now()
		}
		left := w.BlockedGrace - w.since(since)
		if left <= 0 || w.StopRequested() || (w.Retiring != nil && w.Retiring()) ||
			w.Wait == nil || w.Wait(min(w.BlockedRetry, left)) {
			// A scout records a final outcome only.
			w.Queue.Park(outcome.Final("its outcome could not be recorded in time"))
			w.Log.Logf("lantern_async worker: left the outcome of task %d for a scout of its database: %v",
				outcome.JobID, err)
			return true, nil
		}
	}
}
