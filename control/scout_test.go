package control

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/bgworker"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func runScout(t *testing.T, site *fakeSite, startSweep bool) (*Scout, *fakeLogger) {
	t.Helper()
	log := &fakeLogger{}
	s := &Scout{Site: site, Log: log, StartSweep: startSweep}
	_, err := s.Run()
	require.NoError(t, err)
	return s, log
}

// assertFailure checks a settle that fails tasks with a given message.
func assertFailure(t *testing.T, got settleCall, sel Selection, from bgworker.Status, jobID int64, code, msgPrefix string) {
	t.Helper()
	assert.Equal(t, sel, got.Sel, "selection")
	assert.Equal(t, from, got.From, "from")
	assert.Equal(t, jobID, got.Outcome.JobID, "job id")
	assert.Equal(t, bgworker.Failed, got.Outcome.Status, "status")
	assert.Equal(t, code, got.Outcome.SQLState, "sqlstate")
	assert.Truef(t, strings.HasPrefix(got.Outcome.Message, msgPrefix),
		"message %q should start with %q", got.Outcome.Message, msgPrefix)
}

func TestScoutDoesNothingWhereTheExtensionIsNotInstalled(t *testing.T) {
	site := newSite()
	site.installed = false
	site.lost = []LostTask{{JobID: 7, Table: tasksTable}}
	site.orphans = 3
	site.queues = []RoleQueue{queue("a", keyA.Role, 1), unowned("mallory", 1)}

	_, log := runScout(t, site, true)
	assert.Equal(t, []string{"Retiring", "Looking", "Installed", "NoteHistory", "Settled"}, site.calls,
		"its history noted (as none where the extension is not installed: la_bk_run skips the look)")
	assert.Empty(t, site.settles)
	assert.Empty(t, site.notes)
	assert.Empty(t, log.lines)
}

func TestScoutSettlesLostTasks(t *testing.T) {
	site := newSite()
	canceled := LostTask{JobID: 7, Table: tasksTable, Canceled: true}
	failed := LostTask{JobID: 8, Table: tasksTable + 1}
	site.lost = []LostTask{canceled, failed}

	_, log := runScout(t, site, false)
	require.Len(t, site.settles, 2)
	assert.Equal(t, settleCall{Sel: Selection{WaitForLocks: true}, From: bgworker.Running, Outcome: bgworker.Outcome{
		JobID: 7, Table: tasksTable, Status: bgworker.Canceled, Message: "Canceled by user", SQLState: "57014",
	}}, site.settles[0])
	assertFailure(t, site.settles[1], Selection{WaitForLocks: true}, bgworker.Running, 8, "57P01", workerLostMsg)
	assert.Equal(t, tasksTable+1, site.settles[1].Outcome.Table, "table")
	assert.Contains(t, site.settles[1].Outcome.Message, "\nHINT:  See the server log for why the process exited.")
	assert.Equal(t, []LostTask{canceled, failed}, site.found)
	assert.Equal(t, []string{
		"Retiring", "Looking", "Installed", "Lost",
		"Settle", "Found", "Settle", "Found",
		"Copied", "FailOrphans", "Queues", "ExpireHistory", "NoteHistory", "Settled",
	}, site.calls, "each lost task is settled, then found; all before the orphans are failed")
	assert.Empty(t, log.lines)
}

func TestScoutFailsOrphans(t *testing.T) {
	tests := []struct {
		name       string
		startSweep bool
		n          int64
		msg        string
		logs       []string
	}{
		{name: "start sweep", startSweep: true, n: 3, msg: serverStoppedMsg,
			logs: []string{"lantern_async: marked 3 task(s) that were running when the server stopped as failed"}},
		{name: "start sweep, none", startSweep: true, msg: serverStoppedMsg},
		{name: "later sweep", n: 2, msg: workerLostMsg,
			logs: []string{"lantern_async: marked 2 task(s) that were running when their process exited as failed"}},
		{name: "later sweep, none", msg: workerLostMsg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			site := newSite()
			site.orphans = tc.n

			_, log := runScout(t, site, tc.startSweep)
			require.Len(t, site.failed, 1)
			o := site.failed[0]
			assert.Zero(t, o.JobID, "every orphan")
			assert.Zero(t, o.Table)
			assert.Equal(t, bgworker.Failed, o.Status)
			assert.Equal(t, "57P01", o.SQLState)
			assert.Truef(t, strings.HasPrefix(o.Message, tc.msg), "message %q should start with %q", o.Message, tc.msg)
			assert.Equal(t, tc.logs, log.lines)
		})
	}
}

func TestScoutQueues(t *testing.T) {
	tests := []struct {
		name   string
		queue  RoleQueue
		notes  []noted
		sel    Selection
		code   string
		prefix string
		detail string
	}{
		{name: "runnable", queue: queue("a", keyA.Role, 5), notes: []noted{{RoleID: keyA.Role, Pending: 5}}},
		{name: "rows not submitted through async_task", queue: unowned("mallory", 2),
			sel:  Selection{RoleID: 0, Unowned: true},
			code: "42501", prefix: "ERROR:  this task was not submitted through lantern.async_task()\nDETAIL:  "},
		{name: "dropped role", queue: dropped(queue("ghost", keyB.Role, 2)),
			sel:  Selection{RoleID: keyB.Role},
			code: "42704", prefix: "ERROR:  the role that submitted this task no longer exists\nDETAIL:  ",
			detail: `Role "ghost" (OID 20) was dropped`},
		{name: "dropped role that could not log in either", queue: noLogin(dropped(queue("ghost", keyB.Role, 2))),
			sel:  Selection{RoleID: keyB.Role},
			code: "42704", prefix: "ERROR:  the role that submitted this task no longer exists\nDETAIL:  ",
			detail: `Role "ghost" (OID 20) was dropped`},
		{name: "role without login", queue: noLogin(queue("locked", keyC.Role, 2)),
			sel:  Selection{RoleID: keyC.Role},
			code: "28000", prefix: `ERROR:  role "locked" is not permitted to log in` + "\nDETAIL:  "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			site := newSite()
			site.queues = []RoleQueue{tc.queue}

			runScout(t, site, false)
			assert.Equal(t, tc.notes, site.notes, "notes")
			if tc.code == "" {
				assert.Empty(t, site.settles)
				return
			}
			require.Len(t, site.settles, 1)
			assertFailure(t, site.settles[0], tc.sel, bgworker.Pending, 0, tc.code, tc.prefix)
			assert.Contains(t, site.settles[0].Outcome.Message, tc.detail)
			assert.Zero(t, site.settles[0].Outcome.Table)
		})
	}
}

func TestScoutNotesAndRefusesEachQueueInOrder(t *testing.T) {
	site := newSite()
	site.queues = []RoleQueue{
		queue("a", keyA.Role, 3), dropped(queue("ghost", keyB.Role, 1)),
		queue("c", keyC.Role, 1), unowned("mallory", 4),
	}

	runScout(t, site, false)
	assert.Equal(t, []noted{{RoleID: keyA.Role, Pending: 3}, {RoleID: keyC.Role, Pending: 1}}, site.notes)
	require.Len(t, site.settles, 2)
	assert.Equal(t, Selection{RoleID: keyB.Role}, site.settles[0].Sel)
	assert.Equal(t, Selection{Unowned: true}, site.settles[1].Sel)
	assert.Equal(t, []string{"Note", "Settle", "Note", "Settle", "ExpireHistory", "NoteHistory", "Settled"}, site.calls[len(site.calls)-7:])
}

// A role's earliest pending task may not be due yet (a run_after, a
// retry's time): the note carries when it is, so the launcher starts
// nothing for it before then.
func TestScoutNotesWhenEachQueueIsDue(t *testing.T) {
	due := epoch.Add(time.Hour)
	later := queue("a", keyA.Role, 3)
	later.Due = due
	site := newSite()
	site.queues = []RoleQueue{later, queue("c", keyC.Role, 1)}

	runScout(t, site, false)
	assert.Equal(t, []noted{{RoleID: keyA.Role, Pending: 3, Due: due}, {RoleID: keyC.Role, Pending: 1}}, site.notes)
}

func TestScoutSweepsAgainWhenNotSettled(t *testing.T) {
	site := newSite()
	site.settled = []bool{false}
	site.queues = []RoleQueue{queue("a", keyA.Role, 1)}

	s, _ := runScout(t, site, true)
	assert.Equal(t, 2, site.count("Looking"))
	assert.Equal(t, 2, site.count("Settled"))
	assert.Equal(t, []noted{{RoleID: keyA.Role, Pending: 1}, {RoleID: keyA.Role, Pending: 1}}, site.notes)
	require.Len(t, site.failed, 2)
	assert.True(t, strings.HasPrefix(site.failed[0].Message, serverStoppedMsg), "first sweep: %q", site.failed[0].Message)
	assert.True(t, strings.HasPrefix(site.failed[1].Message, workerLostMsg), "second sweep: %q", site.failed[1].Message)
	assert.False(t, s.StartSweep)
	assert.Equal(t, []string{"Settled", "Retiring", "Looking", "Installed"}, site.calls[10:14])
}

func TestScoutLeavesWhenRetiring(t *testing.T) {
	site := newSite()
	site.retiring = []bool{true}
	site.lost = []LostTask{{JobID: 7}}
	runScout(t, site, true)
	assert.Equal(t, []string{"Retiring"}, site.calls, "no sweep")

	site = newSite()
	site.settled = []bool{false}
	site.retiring = []bool{false, true}
	runScout(t, site, false)
	assert.Equal(t, 1, site.count("Installed"), "one sweep, then it leaves")
	assert.Equal(t, []string{"Settled", "Retiring"}, site.calls[len(site.calls)-2:])
}

func TestScoutReturnsSiteErrors(t *testing.T) {
	errSite := errors.New("canceling statement due to lock timeout")
	tests := []struct {
		name   string
		script func(*fakeSite)
		calls  []string
	}{
		{name: "Installed", script: func(s *fakeSite) { s.installedErr = errSite },
			calls: []string{"Retiring", "Looking", "Installed"}},
		{name: "Settle of a lost task", script: func(s *fakeSite) {
			s.lost = []LostTask{{JobID: 7}, {JobID: 8}}
			s.settleErrs = []error{errSite}
		}, calls: []string{"Retiring", "Looking", "Installed", "Lost", "Settle"}},
		{name: "Copied", script: func(s *fakeSite) { s.copiedErr = errSite },
			calls: []string{"Retiring", "Looking", "Installed", "Lost", "Copied"}},
		{name: "FailCopied", script: func(s *fakeSite) {
			s.copied = []CopiedQueue{{DB: 5, Name: "app", Exists: true, Unfinished: 1}}
			s.failCopiedErr = errSite
		}, calls: []string{"Retiring", "Looking", "Installed", "Lost", "Copied", "FailCopied"}},
		{name: "FailOrphans", script: func(s *fakeSite) { s.orphansErr = errSite },
			calls: []string{"Retiring", "Looking", "Installed", "Lost", "Copied", "FailOrphans"}},
		{name: "Queues", script: func(s *fakeSite) { s.queuesErr = errSite },
			calls: []string{"Retiring", "Looking", "Installed", "Lost", "Copied", "FailOrphans", "Queues"}},
		{name: "Settle of an unrunnable queue", script: func(s *fakeSite) {
			s.queues = []RoleQueue{unowned("mallory", 1), queue("a", keyA.Role, 1)}
			s.settleErrs = []error{errSite}
		}, calls: []string{"Retiring", "Looking", "Installed", "Lost", "Copied", "FailOrphans", "Queues", "Settle"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			site := newSite()
			tc.script(site)
			log := &fakeLogger{}
			swept, err := (&Scout{Site: site, Log: log}).Run()
			assert.ErrorIs(t, err, errSite)
			assert.False(t, swept)
			assert.Equal(t, tc.calls, site.calls, "the sweep stops at the error")
			assert.Empty(t, site.found, "a lost task not settled is kept")
			assert.Empty(t, log.lines)
		})
	}
}

// A lost task's row is settled waiting for its lock (only a superuser
// could hold it): a row skipped as locked would be taken for a finished
// one, and the task would lose its accepted cancel.
func TestScoutWaitsForALostTasksRow(t *testing.T) {
	site := newSite()
	lost := LostTask{JobID: 7, Table: tasksTable, Canceled: true}
	site.lost = []LostTask{lost}
	site.settleCounts = []int64{0} // it had finished meanwhile

	runScout(t, site, false)
	require.Len(t, site.settles, 1)
	assert.True(t, site.settles[0].Sel.WaitForLocks, "a lost task's row is waited for")
	assert.Equal(t, bgworker.Canceled, site.settles[0].Outcome.Status)
	assert.Equal(t, []LostTask{lost}, site.found, "nothing left to settle: found")
	for _, st := range site.settles[1:] {
		assert.False(t, st.Sel.WaitForLocks, "only lost tasks wait for locks")
	}
}

// A worker that could not record its task's outcome parked it: the scout
// records that outcome as it is, not a "process exited" failure.
func TestScoutRecordsAParkedOutcome(t *testing.T) {
	site := newSite()
	parked := bgworker.Outcome{Status: bgworker.Succeeded}
	lost := LostTask{JobID: 9, Table: tasksTable, Canceled: true, Parked: &parked}
	site.lost = []LostTask{lost}
	runScout(t, site, false)
	require.NotEmpty(t, site.settles)
	got := site.settles[0].Outcome
	assert.Equal(t, bgworker.Outcome{JobID: 9, Table: tasksTable, Status: bgworker.Succeeded}, got,
		"the worker's own outcome wins over the accepted-cancel flag: it was decided after it")
	assert.Equal(t, []LostTask{lost}, site.found)
}

// The history goes a batch per call until a call deletes less than a full
// batch; the launcher then learns when the next rows fall due.
func TestScoutExpiresHistoryInBatches(t *testing.T) {
	site := newSite()
	site.expired = []int64{fakeBatch, fakeBatch, 7}
	log := &fakeLogger{}
	s := Scout{Site: site, Log: log}
	_, err := s.Run()
	require.NoError(t, err)
	assert.Equal(t, 3, site.count("ExpireHistory"))
	assert.Equal(t, 1, site.count("NoteHistory"))
	require.Len(t, log.lines, 1)
	assert.Contains(t, log.lines[0], "deleted 1007 finished task(s)")
}

// A scout asked to leave stops between batches, and still says what is left.
func TestScoutStopsExpiringWhenRetiring(t *testing.T) {
	site := newSite()
	site.expired = []int64{fakeBatch, fakeBatch, fakeBatch}
	site.retiring = []bool{false, true}
	s := Scout{Site: site, Log: &fakeLogger{}}
	_, err := s.Run()
	require.NoError(t, err)
	assert.Equal(t, 1, site.count("ExpireHistory"))
	assert.Equal(t, 1, site.count("NoteHistory"))
}

// TestScoutFailsCopiedTasks: the unfinished tasks a copied database
// inherited end failed, pending and running ones, before the orphans are
// looked at, with a message that names the database they belong to.
func TestScoutFailsCopiedTasks(t *testing.T) {
	site := newSite()
	site.copied = []CopiedQueue{
		{DB: 16384, Name: "app", Exists: true, Unfinished: 3},
		{DB: 16999, Unfinished: 1},
	}
	site.failCopiedCounts = []int64{2, 1, 1, 0}

	_, log := runScout(t, site, true)
	assert.Equal(t, []string{
		"Retiring", "Looking", "Installed", "Lost",
		"Copied", "FailCopied", "FailCopied", "FailCopied", "FailCopied",
		"FailOrphans", "Queues", "ExpireHistory", "NoteHistory", "Settled",
	}, site.calls)
	require.Len(t, site.copiedFails, 4)
	for i, want := range []struct {
		db   uint32
		from bgworker.Status
	}{{16384, bgworker.Pending}, {16384, bgworker.Running}, {16999, bgworker.Pending}, {16999, bgworker.Running}} {
		got := site.copiedFails[i]
		assert.Equal(t, want.db, got.DB)
		assert.Equal(t, want.from, got.From)
		assert.Zero(t, got.Outcome.JobID, "every task of that database")
		assert.Equal(t, bgworker.Failed, got.Outcome.Status)
		assert.Equal(t, "55000", got.Outcome.SQLState)
		assert.True(t, strings.HasPrefix(got.Outcome.Message, "ERROR:  this task was submitted in another database\n"), got.Outcome.Message)
	}
	assert.Contains(t, site.copiedFails[0].Outcome.Message, `DETAIL:  The task belongs to database "app" (OID 16384).`)
	assert.Contains(t, site.copiedFails[2].Outcome.Message, "DETAIL:  The task belongs to the database with OID 16999, which no longer exists.")
	assert.Equal(t, []string{
		`lantern_async: marked 3 task(s) submitted in database "app" as failed: this database holds a copy of their rows`,
		"lantern_async: marked 1 task(s) submitted in the database with OID 16999, which no longer exists as failed: this database holds a copy of their rows",
	}, log.lines)
}
