package main

/*
#include <stdlib.h>
#include "la_call.h"
#include "la_shared.h"
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/lanterndata/lantern_async/bgworker"
	"github.com/lanterndata/lantern_async/bgworker/pgerr"
)

// taskQueue is bgworker.Queue over the bookkeeping helpers.
type taskQueue struct {
	pg   *pg
	slot C.int
	// Out-parameters live in C memory, allocated once.
	out *claimOut
}

type claimOut struct {
	jobid C.int64_t
	query *C.char
	relid C.uint32_t
	count C.int64_t
}

func (q *taskQueue) outs() *claimOut {
	if q.out == nil {
		q.out = (*claimOut)(C.calloc(1, C.size_t(unsafe.Sizeof(claimOut{}))))
	}
	return q.out
}

func (q *taskQueue) Claim() (bgworker.Task, bool, error) {
	o := q.outs()
	if !C.la_bk_claim(q.slot, &o.jobid, &o.query, &o.relid, q.pg.err) {
		return bgworker.Task{}, false, q.pg.lastError()
	}
	if o.jobid == 0 {
		return bgworker.Task{}, false, nil
	}
	return bgworker.Task{JobID: int64(o.jobid), Query: C.GoString(o.query), Table: uint32(o.relid)}, true, nil
}

func (q *taskQueue) Settle(outcome bgworker.Outcome) error {
	// Its own running row: nobody else locks it, so no need to skip locks.
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
	s := (*C.LaSettle)(C.calloc(1, C.sizeof_LaSettle))
	defer C.free(unsafe.Pointer(s))
	// Outcome.JobID 0 is a scout's "every task"; jobids are positive.
	s.all_jobs = C.bool(o.JobID == 0)
	s.jobid = C.int64(o.JobID)
	s.roleid = C.Oid(f.roleID)
	s.unowned = C.bool(f.unowned)
	s.skip_locked = C.bool(f.skipLocked)
	s.from_status = C.CString(string(from))
	defer C.free(unsafe.Pointer(s.from_status))
	s.to_status = C.CString(string(o.Status))
	defer C.free(unsafe.Pointer(s.to_status))
	s.message = optionalCString(o.Message)
	defer C.free(unsafe.Pointer(s.message))
	s.sqlstate = optionalCString(o.SQLState)
	defer C.free(unsafe.Pointer(s.sqlstate))

	if !C.la_bk_settle(s, C.uint32_t(o.Table), count, p.err) {
		return 0, p.lastError()
	}
	return int64(*count), nil
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
	// recorded is an out-parameter in C memory, allocated once.
	recorded *C.bool
}

func (s *session) Execute(task bgworker.Task) (bool, error) {
	if s.recorded == nil {
		s.recorded = (*C.bool)(C.calloc(1, C.sizeof_bool))
	}
	cQuery := C.CString(task.Query)
	defer C.free(unsafe.Pointer(cQuery))
	if !C.la_exec_task(s.slot, C.int64_t(task.JobID), C.uint32_t(task.Table), cQuery, s.recorded, s.pg.err) {
		return false, s.pg.lastError()
	}
	return bool(*s.recorded), nil
}

func (s *session) Reset() error {
	if !C.la_reset_session(s.pg.err) {
		return s.pg.lastError()
	}
	return nil
}
