package bgworker

import (
	"errors"
	"fmt"
	"strconv"
)

// callLog is the order of calls across the fake Queue and Session.
type callLog []string

func (l *callLog) add(call string) { *l = append(*l, call) }

// fakeQueue hands out tasks in order and records what gets settled.
type fakeQueue struct {
	log      *callLog
	tasks    []Task
	claimErr error // returned by every Claim when set (after the first claimErrAfter)
	// claimErrAfter Claims succeed before claimErr applies.
	claimErrAfter int
	settleErr     error // returned by every Settle when set (after recording), and by a Claim that carries an outcome
	// blockedSettles Settles fail with errBlocked before they succeed.
	blockedSettles int
	parked         []Outcome
	claims         int
	settled        []Outcome
	done           []int64
	canceled       map[int64]bool // tasks lantern.cancel_task() stopped
	// blockedClaims Claims fail with errBlocked first.
	blockedClaims int
	// staleAfter: the Claims after this many find the session's settings
	// changed (ErrSettingsChanged, once finished is recorded); 0: never.
	staleAfter int
}

func (q *fakeQueue) Claim(finished *Outcome) (Task, bool, error) {
	q.claims++
	if q.blockedClaims > 0 {
		q.blockedClaims--
		q.log.add("claim: blocked")
		return Task{}, false, errBlocked
	}
	if q.claimErr != nil && q.claims > q.claimErrAfter {
		q.log.add("claim: error")
		return Task{}, false, q.claimErr
	}
	if finished != nil {
		// The same table lock as a Settle of its own.
		if q.blockedSettles > 0 {
			q.blockedSettles--
			q.log.add("settle " + strconv.FormatInt(finished.JobID, 10) + " with the claim: blocked")
			return Task{}, false, errBlocked
		}
		if q.settleErr != nil {
			q.log.add("settle " + strconv.FormatInt(finished.JobID, 10) + " with the claim: error")
			return Task{}, false, q.settleErr
		}
		q.log.add("settle " + strconv.FormatInt(finished.JobID, 10) + " with the claim")
		q.settled = append(q.settled, *finished)
		q.done = append(q.done, finished.JobID)
	}
	if q.staleAfter > 0 && q.claims > q.staleAfter {
		q.log.add("claim: settings changed")
		return Task{}, false, ErrSettingsChanged
	}
	if len(q.tasks) == 0 {
		q.log.add("claim: none")
		return Task{}, false, nil
	}
	task := q.tasks[0]
	q.tasks = q.tasks[1:]
	q.log.add("claim " + strconv.FormatInt(task.JobID, 10))
	return task, true, nil
}

func (q *fakeQueue) Settle(o Outcome) error {
	if q.blockedSettles > 0 {
		q.blockedSettles--
		q.log.add("settle " + strconv.FormatInt(o.JobID, 10) + ": blocked")
		return errBlocked
	}
	q.log.add("settle " + strconv.FormatInt(o.JobID, 10))
	q.settled = append(q.settled, o)
	return q.settleErr
}

// errBlocked is the lock timeout of a Settle.
var errBlocked = errors.New("canceling statement due to lock timeout")

func (q *fakeQueue) Blocked(err error) bool { return errors.Is(err, errBlocked) }

func (q *fakeQueue) Park(o Outcome) {
	q.log.add("park " + strconv.FormatInt(o.JobID, 10))
	q.parked = append(q.parked, o)
}

func (q *fakeQueue) Finish(jobID int64) bool {
	return q.canceled[jobID]
}

func (q *fakeQueue) Done(jobID int64) {
	q.log.add("done " + strconv.FormatInt(jobID, 10))
	q.done = append(q.done, jobID)
}

// fakeSession returns scripted results per query.
type fakeSession struct {
	log      *callLog
	results  map[string]error // Execute error by query; nil when absent
	recorded map[string]bool  // queries whose success Execute commits itself
	commits  map[string]bool  // queries that commit work before they fail
	executed []Task
	limits   []Limit // the limit of each executed task
	resetErr error
}

func (s *fakeSession) Execute(task Task, limit Limit) (Result, error) {
	s.log.add("execute " + task.Query)
	s.executed = append(s.executed, task)
	s.limits = append(s.limits, limit)
	return Result{Recorded: s.recorded[task.Query], Committed: s.commits[task.Query]}, s.results[task.Query]
}

func (s *fakeSession) Reset() error {
	s.log.add("reset")
	return s.resetErr
}

type fakeLogger struct{ lines []string }

func (l *fakeLogger) Logf(format string, args ...any) {
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// fixture is a worker wired to fakes that share one call log.
type fixture struct {
	log     callLog
	queue   *fakeQueue
	session *fakeSession
	worker  *Worker
}

func newFixture(tasks ...Task) *fixture {
	f := &fixture{}
	f.queue = &fakeQueue{log: &f.log, tasks: tasks}
	f.session = &fakeSession{log: &f.log, results: map[string]error{}, recorded: map[string]bool{}}
	f.worker = &Worker{
		Queue:         f.queue,
		Session:       f.session,
		StopRequested: func() bool { return false },
		Log:           &fakeLogger{},
	}
	return f
}

// haha is the error PostgreSQL 15 raises for hahaQuery.
