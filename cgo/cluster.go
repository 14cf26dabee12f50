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

	"github.com/lanterndata/lantern_async/control"
)

// cluster is control.Cluster over the launcher's helpers and shared memory.
type cluster struct {
	pg  *pg
	out *clusterOut
}

// clusterOut holds the helpers' out-parameters in C memory, allocated once.
type clusterOut struct {
	oids     *C.uint32_t
	noids    C.int
	verdicts *C.int // one per board entry, for Check
	// views has one entry per slot, for Slots and Reap: one cgo call a round.
	views *C.LaSlotView
	// demands has one entry per place on the demand board.
	demands *C.LaDemandView
	// histories has one entry per place in the history inbox.
	histories *C.LaHistoryView
}

func (c *cluster) outs() *clusterOut {
	if c.out == nil {
		c.out = (*clusterOut)(C.calloc(1, C.size_t(unsafe.Sizeof(clusterOut{}))))
		c.out.views = (*C.LaSlotView)(C.calloc(C.size_t(C.la_slot_count()), C.sizeof_LaSlotView))
		c.out.demands = (*C.LaDemandView)(C.calloc(C.size_t(C.la_demand_capacity()), C.sizeof_LaDemandView))
		c.out.verdicts = (*C.int)(C.calloc(C.size_t(C.la_demand_capacity()), C.sizeof_int))
		c.out.histories = (*C.LaHistoryView)(C.calloc(C.size_t(C.la_history_capacity()), C.sizeof_LaHistoryView))
	}
	return c.out
}

// slotViews returns the first n views filled by the last slot helper call.
func (o *clusterOut) slotViews(n C.int) []C.LaSlotView {
	return unsafe.Slice(o.views, int(n))
}

func (c *cluster) Databases() ([]uint32, error) {
	o := c.outs()
	if !C.la_launcher_databases(&o.oids, &o.noids, c.pg.err) {
		return nil, c.pg.lastError()
	}
	oids := unsafe.Slice(o.oids, int(o.noids))
	dbs := make([]uint32, len(oids))
	for i, oid := range oids {
		dbs[i] = uint32(oid)
	}
	return dbs, nil
}

func (c *cluster) Demands() []control.Demand {
	o := c.outs()
	n := C.la_demand_read(o.demands, C.la_demand_capacity())
	views := unsafe.Slice(o.demands, int(n))
	demands := make([]control.Demand, len(views))
	for i, v := range views {
		demands[i] = control.Demand{
			Key:  control.Key{DB: uint32(v.dboid), Role: uint32(v.roleid)},
			Seq:  uint64(v.seq),
			Hint: int64(v.hint),
			Due:  pgTime(v.due),
		}
	}
	return demands
}

func (c *cluster) TakeOverflow() bool { return bool(C.la_demand_take_overflow()) }

// Check asks about the keys through the board's views, a board's worth
// per call (one transaction each): a round asks about its board's entries
// and a few databases of a sweep (control.Launcher.sweepCandidates).
func (c *cluster) Check(keys []control.Key) ([]control.Verdict, error) {
	verdicts := make([]control.Verdict, 0, len(keys))
	for len(keys) > 0 { // an idle round touches no catalog
		n := min(len(keys), int(C.la_demand_capacity()))
		part, err := c.check(keys[:n])
		if err != nil {
			return nil, err
		}
		verdicts = append(verdicts, part...)
		keys = keys[n:]
	}
	return verdicts, nil
}

func (c *cluster) check(keys []control.Key) ([]control.Verdict, error) {
	o := c.outs()
	views := unsafe.Slice(o.demands, int(C.la_demand_capacity()))
	for i, k := range keys {
		views[i].dboid = C.Oid(k.DB)
		views[i].roleid = C.Oid(k.Role)
	}
	if !C.la_launcher_check(o.demands, C.int(len(keys)), o.verdicts, c.pg.err) {
		return nil, c.pg.lastError()
	}
	verdicts := make([]control.Verdict, len(keys))
	for i, v := range unsafe.Slice(o.verdicts, len(keys)) {
		verdicts[i] = verdictOf(v)
	}
	return verdicts, nil
}

func verdictOf(v C.int) control.Verdict {
	switch v {
	case C.LA_DATABASE_GONE:
		return control.DatabaseGone
	case C.LA_DATABASE_BLOCKED:
		return control.DatabaseBlocked
	case C.LA_ROLE_UNRUNNABLE:
		return control.RoleUnrunnable
	}
	return control.Runnable
}

func (c *cluster) Note(k control.Key)   { C.la_demand_note(C.Oid(k.DB), C.Oid(k.Role), 0) }
func (c *cluster) Forget(k control.Key) { C.la_demand_forget(C.Oid(k.DB), C.Oid(k.Role)) }

func (c *cluster) ForgetDatabase(db uint32) {
	C.la_demand_forget_database(C.Oid(db))
	C.la_lost_forget_database(C.Oid(db))
}

func (c *cluster) ReconcileNeeded() bool { return bool(C.la_reconcile_needed()) }
func (c *cluster) MarkReconciled()       { C.la_reconcile_done() }
func (c *cluster) Capacity() int         { return int(C.la_slot_count()) }

func (c *cluster) Slots() []control.Slot {
	o := c.outs()
	views := o.slotViews(C.la_read_slots(o.views, C.la_slot_count()))
	slots := make([]control.Slot, 0, len(views))
	for _, v := range views {
		slots = append(slots, control.Slot{
			Index:    int(v.index),
			Key:      slotKey(v),
			JobID:    int64(v.jobid),
			TasksRun: int64(v.tasks_run),
			Retiring: bool(v.retiring),
		})
	}
	return slots
}

// slotKey is what a slot serves; a scout's role is 0 whatever it logged in as.
func slotKey(v C.LaSlotView) control.Key {
	k := control.Key{DB: uint32(v.dboid), Role: uint32(v.roleid)}
	if v.kind == C.LA_KIND_SCOUT {
		k.Role = 0
	}
	return k
}

func (c *cluster) Launch(k control.Key, startSweep bool) (bool, error) {
	if C.la_launch(C.uint32_t(k.DB), C.uint32_t(k.Role), C.bool(startSweep), c.pg.err) >= 0 {
		return true, nil
	}
	if c.pg.err.message != nil {
		return false, c.pg.lastError()
	}
	return false, nil // no free slot or background worker process: next round
}

func (c *cluster) Wake(slot int)   { C.la_slot_wake(C.int(slot)) }
func (c *cluster) Retire(slot int) { C.la_slot_retire(C.int(slot)) }

func (c *cluster) Reap() ([]control.Exit, error) {
	o := c.outs()
	n := C.la_reap_workers(o.views, C.la_slot_count(), c.pg.err)
	if n < 0 {
		return nil, c.pg.lastError()
	}
	views := o.slotViews(n)
	exits := make([]control.Exit, 0, len(views))
	for _, v := range views {
		exits = append(exits, control.Exit{
			Key:      slotKey(v),
			JobID:    int64(v.jobid),
			Table:    uint32(v.tasks_relid),
			Canceled: bool(v.cancel_requested),
			Clean:    bool(v.clean_exit),
			Parked:   bool(v.parked),
			Retired:  bool(v.retiring),
			TasksRun: int64(v.tasks_run),
		})
	}
	return exits, nil
}

func (c *cluster) Lost(e control.Exit) {
	C.la_lost_add(C.Oid(e.DB), C.Oid(e.Table), C.int64(e.JobID), C.bool(e.Canceled))
}

// Wait rounds the timeout up to whole milliseconds: a nap until a demand
// falls due (or a backoff ends) must not end before it, only to take one
// more round and nap again.
func (c *cluster) Wait(timeout time.Duration) bool {
	ms := (timeout + time.Millisecond - 1) / time.Millisecond
	return C.la_wait(C.long(ms)) != 0
}

// History takes the history inbox (loader/state/history.c) in one call.
func (c *cluster) History() ([]control.HistoryNote, bool) {
	o := c.outs()
	var overflow C.bool
	n := C.la_history_take(o.histories, C.la_history_capacity(), &overflow)
	views := unsafe.Slice(o.histories, int(n))
	notes := make([]control.HistoryNote, len(views))
	for i, v := range views {
		notes[i] = control.HistoryNote{
			DB:       uint32(v.dboid),
			Finished: pgTime(v.finished),
			NoteGen:  uint64(v.note_gen),
			Set:      bool(v.set),
			Oldest:   pgTime(v.oldest),
			StillDue: bool(v.still_due),
			Look:     uint64(v.look),
		}
	}
	return notes, bool(overflow)
}

func (c *cluster) HistoryRetention() time.Duration {
	return time.Duration(C.la_history_retention) * time.Second
}

// pgEpoch is where PostgreSQL's TimestampTz counts microseconds from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// pgTime is a TimestampTz as a time.Time; 0 (none) is the zero time. In
// seconds and microseconds: a time.Duration holds only 292 years, and a
// demand's due may be any TimestampTz (DT_NOEND is the largest int64).
func pgTime(ts C.TimestampTz) time.Time {
	if ts == 0 {
		return time.Time{}
	}
	us := int64(ts)
	return time.Unix(pgEpoch.Unix()+us/1e6, us%1e6*1e3).UTC()
}

// pgTimestamp is a time.Time as a TimestampTz, the inverse of pgTime: the
// zero time is 0 (now, for the demand board).
func pgTimestamp(t time.Time) C.TimestampTz {
	if t.IsZero() {
		return 0
	}
	return C.TimestampTz((t.Unix()-pgEpoch.Unix())*1e6 + int64(t.Nanosecond()/1e3))
}
