package main

/*
#include <stdlib.h>
#include <string.h>
#include "la_call.h"
#include "state/la_state.h"
*/
import "C"

import (
	"errors"
	"time"
	"unsafe"

	"github.com/lanterndata/lantern_async/bgworker"
	"github.com/lanterndata/lantern_async/bgworker/pgerr"
)

// taskQueue is bgworker.Queue over the bookkeeping helpers.
type taskQueue struct {
	pg   *pg
	slot C.int
	// Out-parameters live in C memory, allocated once.
	out       *claimOut
	lastQuery string
}

type claimOut struct {
	claimed C.LaClaimed
	count   C.int64_t
}

func (q *taskQueue) outs() *claimOut {
	if q.out == nil {
		q.out = (*claimOut)(C.calloc(1, C.size_t(unsafe.Sizeof(claimOut{}))))
	}
	return q.out
}

func (q *taskQueue) Claim(finished *bgworker.Outcome) (bgworker.Task, bool, error) {
	o := q.outs()
	var cFinished *C.LaSettle
	var relid C.uint32_t
	if finished != nil {
		// Its own running row: nobody else locks it, so no need to skip locks.
		cFinished = newCSettle(settleFilter{}, bgworker.Running, finished)
		defer freeCSettle(cFinished)
		relid = C.uint32_t(finished.Table)
	}
	c := &o.claimed
	if !C.la_bk_claim(q.slot, cFinished, relid, c, q.pg.err) {
		return bgworker.Task{}, false, q.pg.lastError()
	}
	if c.jobid == 0 {
		if C.la_settings_stale() {
			return bgworker.Task{}, false, bgworker.ErrSettingsChanged
		}
		return bgworker.Task{}, false, nil
	}
	return bgworker.Task{
		JobID:   int64(c.jobid),
		Query:   q.queryText(c.query),
		Table:   uint32(c.tasks_relid),
		Timeout: bgworker.Microseconds(int64(c.timeout_us)),
		Attempt: int(c.attempt),
		Retries: int(c.retries),
	}, true, nil
}

// queryText is the claimed query as a Go string. The same text as the
// last task's (a role queueing the same statement again and again) reuses
// that string: a worker's Go heap then takes nothing per task, and its
// memory stays flat however many tasks it runs.
func (q *taskQueue) queryText(c *C.char) string {
	n := int(C.strlen(c))
	if b := unsafe.Slice((*byte)(unsafe.Pointer(c)), n); string(b) == q.lastQuery {
		return q.lastQuery
	}
	q.lastQuery = C.GoStringN(c, C.int(n))
	return q.lastQuery
}

func (q *taskQueue) Settle(outcome bgworker.Outcome) error {
	_, err := settle(q.pg, settleFilter{}, bgworker.Running, outcome, &q.outs().count)
	return err
}

// lockNotAvailable is the SQLSTATE of a lock timeout (55P03).
const lockNotAvailable = "55P03"

func (q *taskQueue) Blocked(err error) bool {
	var e *pgerr.Error
	return errors.As(err, &e) && e.Code == lockNotAvailable
}

func (q *taskQueue) Park(o bgworker.Outcome) {
	status := C.CString(string(o.Status))
	defer C.free(unsafe.Pointer(status))
	sqlstate := optionalCString(o.SQLState)
	defer C.free(unsafe.Pointer(sqlstate))
	message := optionalCString(o.Message)
	defer C.free(unsafe.Pointer(message))
	C.la_slot_park(q.slot, status, sqlstate, message)
}

func (q *taskQueue) Done(int64) {
	// Only now, with the outcome committed, does the slot stop naming the task.
	C.la_slot_task_done(q.slot)
}

// Finish passes the task's point of no return (la_exec_task has passed it
// already when the task's success is recorded; passing it again is a no-op).
func (q *taskQueue) Finish(jobID int64) bool {
	return !bool(C.la_slot_begin_finishing(q.slot, C.int64(jobID)))
}

// settleFilter picks the tasks a settle may change besides the jobid.
type settleFilter struct {
	roleID     uint32 // 0: any role
	unowned    bool   // only rows not submitted through async_task
	skipLocked bool   // leave rows a user holds locked for later
}

// settle is the common path of every status change from Go.
func settle(p *pg, f settleFilter, from bgworker.Status, o bgworker.Outcome, count *C.int64_t) (int64, error) {
	s := newCSettle(f, from, &o)
	defer freeCSettle(s)
	if !C.la_bk_settle(s, C.uint32_t(o.Table), count, p.err) {
		return 0, p.lastError()
	}
	return int64(*count), nil
}

// newCSettle builds a status change in C memory, for freeCSettle.
func newCSettle(f settleFilter, from bgworker.Status, o *bgworker.Outcome) *C.LaSettle {
	s := (*C.LaSettle)(C.calloc(1, C.sizeof_LaSettle))
	// Outcome.JobID 0 is a scout's "every task"; jobids are positive.
	s.all_jobs = C.bool(o.JobID == 0)
	s.jobid = C.int64(o.JobID)
	s.roleid = C.Oid(f.roleID)
	s.unowned = C.bool(f.unowned)
	s.skip_locked = C.bool(f.skipLocked)
	s.from_status = C.CString(string(from))
	s.to_status = C.CString(string(o.Status))
	s.message = optionalCString(o.Message)
	s.sqlstate = optionalCString(o.SQLState)
	s.attempt = C.int32(o.Attempt)
	s.attempt_started = pgTimestamp(o.Started)
	s.attempt_ended = pgTimestamp(o.Ended)
	s.due = pgTimestamp(o.Due)
	return s
}

func freeCSettle(s *C.LaSettle) {
	C.free(unsafe.Pointer(s.from_status))
	C.free(unsafe.Pointer(s.to_status))
	C.free(unsafe.Pointer(s.message))
	C.free(unsafe.Pointer(s.sqlstate))
	C.free(unsafe.Pointer(s))
}

// optionalCString maps "" to NULL; C.free(NULL) is a no-op.
func optionalCString(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

// session is bgworker.Session over the execution helpers.
type session struct {
	pg   *pg
	slot C.int
	// run is the helper's argument in C memory, allocated once.
	run *C.LaTaskRun
}

func (s *session) Execute(task bgworker.Task, limit bgworker.Limit) (bgworker.Result, error) {
	if s.run == nil {
		s.run = (*C.LaTaskRun)(C.calloc(1, C.sizeof_LaTaskRun))
	}
	cQuery := C.CString(task.Query)
	defer C.free(unsafe.Pointer(cQuery))
	*s.run = C.LaTaskRun{
		slot:           s.slot,
		jobid:          C.int64_t(task.JobID),
		tasks_relid:    C.uint32_t(task.Table),
		query:          cQuery,
		limit_us:       C.int64_t(limit.Duration.Microseconds()),
		limit_per_task: C.bool(limit.PerTask),
	}
	if task.Retries > 0 {
		// Its success is recorded with its work, and its attempt's row with it.
		s.run.attempt = C.int32_t(task.Attempt)
		s.run.attempt_started = C.int64_t(pgTimestamp(time.Now()))
	}
	ok := C.la_exec_task(s.run, s.pg.err)
	result := bgworker.Result{Recorded: bool(s.run.recorded), Committed: bool(s.run.committed)}
	if !ok {
		return result, s.pg.lastError()
	}
	return result, nil
}

// rememberSettings takes the session's copy of its role's and database's
// settings before the first claim (helpers/la_settings.c); current is false when
// one the login applied has been removed since: only a new session has
// the settings as they now are.
func rememberSettings(p *pg) (current bool, err error) {
	var c C.bool
	if !C.la_settings_remember(&c, p.err) {
		return false, p.lastError()
	}
	return bool(c), nil
}

func (s *session) Reset() error {
	if !C.la_reset_session(s.pg.err) {
		return s.pg.lastError()
	}
	return nil
}
