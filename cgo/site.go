package main

/*
#include <stdlib.h>
#include "la_call.h"
#include "state/la_state.h"
*/
import "C"

import (
	"time"
	"unsafe"

	"github.com/lanterndata/lantern_async/bgworker"
	"github.com/lanterndata/lantern_async/control"
)

// site is control.Site over the scout's helpers, in the scout's database.
type site struct {
	pg   *pg
	slot C.int
	db   C.Oid
	out  *siteOut
}

// siteOut holds the helpers' out-parameters in C memory, allocated once.
type siteOut struct {
	ready   C.bool
	rows    *C.LaQueueRow
	nrows   C.int
	copies  *C.LaCopiedRow
	ncopies C.int
	count   C.int64_t
	lost    [C.LA_LOST_MAX_VIEWS]C.LaLostView
}

func newSite(pg *pg, slot C.int) *site {
	return &site{
		pg:   pg,
		slot: slot,
		db:   C.Oid(C.la_bk_database()),
		out:  (*siteOut)(C.calloc(1, C.size_t(unsafe.Sizeof(siteOut{})))),
	}
}

func (s *site) Installed() (bool, error) {
	if !C.la_bk_ready(&s.out.ready, s.pg.err) {
		return false, s.pg.lastError()
	}
	return bool(s.out.ready), nil
}

func (s *site) Lost() []control.LostTask {
	n := C.la_lost_list(s.db, &s.out.lost[0], C.int(len(s.out.lost)))
	lost := make([]control.LostTask, 0, int(n))
	for _, v := range s.out.lost[:n] {
		t := control.LostTask{JobID: int64(v.jobid), Table: uint32(v.tasks_relid), Canceled: bool(v.canceled)}
		if v.outcome.set {
			t.Parked = &bgworker.Outcome{
				Status:   bgworker.Status(C.GoString(&v.outcome.status[0])),
				SQLState: C.GoString(&v.outcome.sqlstate[0]),
				Message:  C.GoString(&v.outcome.message[0]),
			}
		}
		lost = append(lost, t)
	}
	return lost
}

func (s *site) Found(t control.LostTask) {
	C.la_lost_remove(s.db, C.int64(t.JobID), C.Oid(t.Table))
}

// Settle never waits for a row lock a user can hold: a user's open
// transaction must not hold up a scout (such rows are settled by a later
// sweep).
func (s *site) Settle(sel control.Selection, from bgworker.Status, o bgworker.Outcome) (int64, error) {
	f := settleFilter{roleID: sel.RoleID, unowned: sel.Unowned, skipLocked: !sel.WaitForLocks}
	return settle(s.pg, f, from, o, &s.out.count)
}

func (s *site) FailOrphans(o bgworker.Outcome) (int64, error) {
	st := (*C.LaSettle)(C.calloc(1, C.sizeof_LaSettle))
	defer C.free(unsafe.Pointer(st))
	st.to_status = C.CString(string(o.Status))
	defer C.free(unsafe.Pointer(st.to_status))
	st.message = optionalCString(o.Message)
	defer C.free(unsafe.Pointer(st.message))
	st.sqlstate = optionalCString(o.SQLState)
	defer C.free(unsafe.Pointer(st.sqlstate))
	if !C.la_bk_fail_orphans(st, &s.out.count, s.pg.err) {
		return 0, s.pg.lastError()
	}
	return int64(s.out.count), nil
}

func (s *site) Queues() ([]control.RoleQueue, error) {
	if !C.la_bk_queues(&s.out.rows, &s.out.nrows, s.pg.err) {
		return nil, s.pg.lastError()
	}
	rows := unsafe.Slice(s.out.rows, int(s.out.nrows))
	queues := make([]control.RoleQueue, 0, len(rows))
	for _, r := range rows {
		queues = append(queues, control.RoleQueue{
			RoleID:     uint32(r.roleid),
			Username:   C.GoString(r.username),
			RoleExists: bool(r.role_exists),
			CanLogin:   bool(r.canlogin),
			OldestJob:  int64(r.oldest_jobid),
			Pending:    int64(r.pending),
			Due:        pgTime(C.TimestampTz(r.next_due)),
		})
	}
	return queues, nil
}

func (s *site) Copied() ([]control.CopiedQueue, error) {
	if !C.la_copies_list(&s.out.copies, &s.out.ncopies, s.pg.err) {
		return nil, s.pg.lastError()
	}
	rows := unsafe.Slice(s.out.copies, int(s.out.ncopies))
	copies := make([]control.CopiedQueue, 0, len(rows))
	for _, r := range rows {
		q := control.CopiedQueue{DB: uint32(r.datid), Unfinished: int64(r.unfinished)}
		if r.datname != nil {
			q.Name, q.Exists = C.GoString(r.datname), true
		}
		copies = append(copies, q)
	}
	return copies, nil
}

// FailCopied never waits for a row lock a user can hold (a later sweep
// settles such rows).
func (s *site) FailCopied(db uint32, from bgworker.Status, o bgworker.Outcome) (int64, error) {
	st := newCSettle(settleFilter{skipLocked: true}, from, &o)
	defer freeCSettle(st)
	if !C.la_copies_fail(C.uint32_t(db), st, &s.out.count, s.pg.err) {
		return 0, s.pg.lastError()
	}
	return int64(s.out.count), nil
}

func (s *site) Note(roleID uint32, pending int64, due time.Time) {
	C.la_demand_note_pending(s.db, C.Oid(roleID), C.int64(pending), pgTimestamp(due))
}

func (s *site) Looking()       { C.la_demand_looking(s.db, 0) }
func (s *site) Settled() bool  { return bool(C.la_demand_settled(s.db, 0, 0)) }
func (s *site) Retiring() bool { return bool(C.la_slot_retiring(s.slot)) }

func (s *site) ExpireHistory() (int64, bool, error) {
	if !C.la_history_expire_batch(&s.out.count, s.pg.err) {
		return 0, false, s.pg.lastError()
	}
	return int64(s.out.count), s.out.count == C.LA_HISTORY_BATCH, nil
}

func (s *site) NoteHistory() error {
	if !C.la_history_note_oldest(s.pg.err) {
		return s.pg.lastError()
	}
	return nil
}
