package main

/*
#include <stdlib.h>
#include "la_call.h"
#include "la_shared.h"
*/
import "C"

import (
	"time"
	"unsafe"

	"github.com/lanterndata/lantern_async/bgworker"
	"github.com/lanterndata/lantern_async/control"
)

// cluster is control.Cluster over the dispatcher's helpers.
type cluster struct {
	pg  *pg
	out *clusterOut
}

// clusterOut holds the helpers' out-parameters in C memory, allocated once.
type clusterOut struct {
	ready C.bool
	rows  *C.LaQueueRow
	nrows C.int
	count C.int64_t
	// views has one entry per slot, for Slots and Reap: one cgo call a round.
	views *C.LaSlotView
}

func (c *cluster) outs() *clusterOut {
	if c.out == nil {
		c.out = (*clusterOut)(C.calloc(1, C.size_t(unsafe.Sizeof(clusterOut{}))))
		c.out.views = (*C.LaSlotView)(C.calloc(C.size_t(C.la_slot_count()), C.sizeof_LaSlotView))
	}
	return c.out
}

// slotViews returns the first n views filled by the last slot helper call.
func (o *clusterOut) slotViews(n C.int) []C.LaSlotView {
	return unsafe.Slice(o.views, int(n))
}

func (c *cluster) Installed() (bool, error) {
	o := c.outs()
	if !C.la_bk_ready(&o.ready, c.pg.err) {
		return false, c.pg.lastError()
	}
	return bool(o.ready), nil
}

func (c *cluster) ReconcileNeeded() bool { return bool(C.la_reconcile_needed()) }
func (c *cluster) MarkReconciled()       { C.la_reconcile_done() }
func (c *cluster) Capacity() int         { return int(C.la_slot_count()) }

func (c *cluster) Queues() ([]control.RoleQueue, error) {
	o := c.outs()
	if !C.la_bk_queues(&o.rows, &o.nrows, c.pg.err) {
		return nil, c.pg.lastError()
	}
	rows := unsafe.Slice(o.rows, int(o.nrows))
	queues := make([]control.RoleQueue, 0, len(rows))
	for _, r := range rows {
		queues = append(queues, control.RoleQueue{
			RoleID:     uint32(r.roleid),
			Username:   C.GoString(r.username),
			RoleExists: bool(r.role_exists),
			CanLogin:   bool(r.canlogin),
			OldestJob:  int64(r.oldest_jobid),
			Pending:    int64(r.pending),
		})
	}
	return queues, nil
}

func (c *cluster) Slots() []control.Slot {
	o := c.outs()
	views := o.slotViews(C.la_read_slots(o.views, C.la_slot_count()))
	slots := make([]control.Slot, 0, len(views))
	for _, v := range views {
		slots = append(slots, control.Slot{
			Index:    int(v.index),
			RoleID:   uint32(v.roleid),
			JobID:    int64(v.jobid),
			Retiring: bool(v.retiring),
		})
	}
	return slots
}

func (c *cluster) Launch(roleID uint32) (bool, error) {
	if C.la_launch_worker(C.uint32_t(roleID), c.pg.err) >= 0 {
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
			RoleID:   uint32(v.roleid),
			JobID:    int64(v.jobid),
			Table:    uint32(v.tasks_relid),
			Canceled: bool(v.cancel_requested),
			Clean:    bool(v.clean_exit),
			TasksRun: int64(v.tasks_run),
		})
	}
	return exits, nil
}

// Settle never waits for a row lock: a user's open transaction must not
// hold up the dispatcher (such rows are settled in a later round).
func (c *cluster) Settle(sel control.Selection, from bgworker.Status, o bgworker.Outcome) (int64, error) {
	f := settleFilter{roleID: sel.RoleID, unowned: sel.Unowned, skipLocked: true}
	return settle(c.pg, f, from, o, &c.outs().count)
}

func (c *cluster) Wait(timeout time.Duration) bool {
	return C.la_wait(C.long(timeout.Milliseconds())) != 0
}
