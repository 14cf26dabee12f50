package control

import (
	"slices"
	"time"

	"github.com/lanterndata/lantern_async/bgworker"
)

type settleCall struct {
	Sel     Selection
	From    bgworker.Status
	Outcome bgworker.Outcome
}

type copiedFail struct {
	DB      uint32
	From    bgworker.Status
	Outcome bgworker.Outcome
}

type noted struct {
	RoleID  uint32
	Pending int64
	Due     time.Time
}

// fakeSite is a scripted Site that records what the scout does. Scripts
// (settleErrs, settleCounts, settled, retiring) are consumed one entry per call; once
// empty, a call has its default result.
type fakeSite struct {
	installed        bool
	installedErr     error
	lost             []LostTask // Found removes one
	settleErrs       []error
	settleCounts     []int64 // rows each Settle changes; then settleCount
	settleCount      int64
	orphans          int64
	orphansErr       error
	queues           []RoleQueue
	queuesErr        error
	copied           []CopiedQueue
	copiedErr        error
	failCopiedErr    error
	failCopiedCounts []int64 // rows each FailCopied changes; then 0
	settled          []bool  // default true
	retiring         []bool  // default false
	expired          []int64 // rows each ExpireHistory deletes; then 0 (a full batch means more)
	expireErr        error
	noteHistErr      error

	calls       []string
	settles     []settleCall
	found       []LostTask
	notes       []noted
	failed      []bgworker.Outcome // FailOrphans outcomes
	copiedFails []copiedFail
}

func newSite() *fakeSite { return &fakeSite{installed: true} }

func (s *fakeSite) record(call string) { s.calls = append(s.calls, call) }

func (s *fakeSite) count(method string) int {
	n := 0
	for _, call := range s.calls {
		if call == method {
			n++
		}
	}
	return n
}

func (s *fakeSite) Installed() (bool, error) {
	s.record("Installed")
	return s.installed, s.installedErr
}

func (s *fakeSite) Lost() []LostTask {
	s.record("Lost")
	return slices.Clone(s.lost)
}

func (s *fakeSite) Found(t LostTask) {
	s.record("Found")
	s.found = append(s.found, t)
	if i := slices.Index(s.lost, t); i >= 0 {
		s.lost = slices.Delete(s.lost, i, i+1)
	}
}

func (s *fakeSite) Settle(sel Selection, from bgworker.Status, o bgworker.Outcome) (int64, error) {
	s.record("Settle")
	s.settles = append(s.settles, settleCall{Sel: sel, From: from, Outcome: o})
	if err := pop(&s.settleErrs, nil); err != nil {
		return 0, err
	}
	return pop(&s.settleCounts, s.settleCount), nil
}

func (s *fakeSite) FailOrphans(o bgworker.Outcome) (int64, error) {
	s.record("FailOrphans")
	s.failed = append(s.failed, o)
	if s.orphansErr != nil {
		return 0, s.orphansErr
	}
	return s.orphans, nil
}

func (s *fakeSite) Copied() ([]CopiedQueue, error) {
	s.record("Copied")
	if s.copiedErr != nil {
		return nil, s.copiedErr
	}
	return s.copied, nil
}

func (s *fakeSite) FailCopied(db uint32, from bgworker.Status, o bgworker.Outcome) (int64, error) {
	s.record("FailCopied")
	s.copiedFails = append(s.copiedFails, copiedFail{DB: db, From: from, Outcome: o})
	if s.failCopiedErr != nil {
		return 0, s.failCopiedErr
	}
	return pop(&s.failCopiedCounts, 0), nil
}

func (s *fakeSite) Queues() ([]RoleQueue, error) {
	s.record("Queues")
	if s.queuesErr != nil {
		return nil, s.queuesErr
	}
	return s.queues, nil
}

func (s *fakeSite) Note(roleID uint32, pending int64, due time.Time) {
	s.record("Note")
	s.notes = append(s.notes, noted{RoleID: roleID, Pending: pending, Due: due})
}

func (s *fakeSite) Looking() { s.record("Looking") }

func (s *fakeSite) Settled() bool {
	s.record("Settled")
	return pop(&s.settled, true)
}

func (s *fakeSite) Retiring() bool {
	s.record("Retiring")
	return pop(&s.retiring, false)
}

// fakeBatch is the fake's full batch of ExpireHistory.
const fakeBatch = 500

func (s *fakeSite) ExpireHistory() (int64, bool, error) {
	s.record("ExpireHistory")
	if s.expireErr != nil {
		return 0, false, s.expireErr
	}
	n := pop(&s.expired, 0)
	return n, n == fakeBatch, nil
}

func (s *fakeSite) NoteHistory() error {
	s.record("NoteHistory")
	return s.noteHistErr
}

// queue is a runnable queue of a role that still exists and can log in.
func queue(name string, roleID uint32, pending int64) RoleQueue {
	return RoleQueue{Username: name, RoleID: roleID, RoleExists: true, CanLogin: true, Pending: pending}
}

// unowned is a queue of rows not submitted through async_task, under a
// name that may well still be a role that can log in.
func unowned(name string, pending int64) RoleQueue { return queue(name, 0, pending) }

func dropped(q RoleQueue) RoleQueue {
	q.RoleExists = false
	return q
}

func noLogin(q RoleQueue) RoleQueue {
	q.CanLogin = false
	return q
}

const (
	serverStoppedMsg = "ERROR:  the server stopped while this task was running\nDETAIL:  "
	workerLostMsg    = "ERROR:  the process running this task exited before the task finished\nDETAIL:  "
)
