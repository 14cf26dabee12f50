package main

/*
#include <stdlib.h>
#include "la_call.h"
#include "la_shared.h"
*/
import "C"

import (
	"unsafe"

	"github.com/lanterndata/lantern_async/bgworker"
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
	_, err := settle(q.pg, "", bgworker.Running, outcome, &q.outs().count)
	// Only now, with the outcome committed, does the slot stop naming the task.
	C.la_slot_set_job(q.slot, 0, 0)
	return err
}

func (q *taskQueue) CancelRequested(jobID int64) bool {
	return bool(C.la_slot_cancel_requested(q.slot, C.int64(jobID)))
}

// settle is the common path of every status change from Go.
func settle(p *pg, username string, from bgworker.Status, o bgworker.Outcome, count *C.int64_t) (int64, error) {
	cFrom := C.CString(string(from))
	defer C.free(unsafe.Pointer(cFrom))
	cTo := C.CString(string(o.Status))
	defer C.free(unsafe.Pointer(cTo))
	cUser := optionalCString(username)
	defer C.free(unsafe.Pointer(cUser))
	cMessage := optionalCString(o.Message)
	defer C.free(unsafe.Pointer(cMessage))
	cState := optionalCString(o.SQLState)
	defer C.free(unsafe.Pointer(cState))

	if !C.la_bk_settle(C.int64_t(o.JobID), C.uint32_t(o.Table), cUser, cFrom, cTo, cMessage, cState, count, p.err) {
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
	pg *pg
}

func (s *session) Execute(query string) error {
	cQuery := C.CString(query)
	defer C.free(unsafe.Pointer(cQuery))
	if !C.la_exec_task(cQuery, s.pg.err) {
		return s.pg.lastError()
	}
	return nil
}

func (s *session) Reset() error {
	if !C.la_reset_session(s.pg.err) {
		return s.pg.lastError()
	}
	return nil
}
