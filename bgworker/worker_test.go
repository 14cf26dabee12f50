package bgworker

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/bgworker/pgerr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const hahaQuery = "SELECT pg_sleep(haha);"

func hahaErr() *pgerr.Error {
	return &pgerr.Error{Severity: "ERROR", Code: "42703", Message: `column "haha" does not exist`, Position: 17}
}

func TestRunReturnsNilWhenNoTaskIsPending(t *testing.T) {
	f := newFixture()
	require.NoError(t, f.worker.Run())
	assert.Equal(t, callLog{"claim: none"}, f.log)
	assert.Empty(t, f.queue.settled)
}

// Each outcome goes in with the next claim; the last one with the claim
// that finds nothing.
func TestRunRunsTasksInClaimOrderExecuteResetThenSettleWithTheNextClaim(t *testing.T) {
	f := newFixture(
		Task{JobID: 3, Query: "SELECT 3"},
		Task{JobID: 1, Query: "SET work_mem = '1MB'"},
		Task{JobID: 2, Query: "SELECT 2"},
	)
	// A failed task is recorded, not a reason to stop.
	f.session.results["SET work_mem = '1MB'"] = pgerr.New("25001", "boom")

	require.NoError(t, f.worker.Run())
	assert.Equal(t, callLog{
		"claim 3", "execute SELECT 3", "reset",
		"settle 3 with the claim", "claim 1", "execute SET work_mem = '1MB'", "reset",
		"settle 1 with the claim", "claim 2", "execute SELECT 2", "reset",
		"settle 2 with the claim", "claim: none",
	}, f.log)
	assert.Equal(t, []int64{3, 1, 2}, f.queue.done)
	require.Len(t, f.queue.settled, 3)
	assert.Equal(t, []Status{Succeeded, Failed, Succeeded},
		[]Status{f.queue.settled[0].Status, f.queue.settled[1].Status, f.queue.settled[2].Status})
}

func TestRunRecordsOutcome(t *testing.T) {
	hahaPsql := "ERROR:  column \"haha\" does not exist\n" +
		"LINE 1: SELECT pg_sleep(haha);\n" +
		"                        ^"
	tests := []struct {
		name    string
		query   string
		execErr error
		want    Outcome
	}{
		{
			name:  "success",
			query: "SELECT 1",
			want:  Outcome{JobID: 42, Status: Succeeded},
		},
		{
			name:    "pgerr with position",
			query:   hahaQuery,
			execErr: hahaErr(),
			want:    Outcome{JobID: 42, Status: Failed, Message: hahaPsql, SQLState: "42703"},
		},
		{
			name:    "wrapped pgerr",
			query:   hahaQuery,
			execErr: fmt.Errorf("running task: %w", hahaErr()),
			want:    Outcome{JobID: 42, Status: Failed, Message: hahaPsql, SQLState: "42703"},
		},
		{
			name:  "pgerr with detail and hint",
			query: "SELECT 1/0",
			execErr: &pgerr.Error{Severity: "ERROR", Code: "22012", Message: "division by zero",
				Detail: "d", Hint: "h"},
			want: Outcome{JobID: 42, Status: Failed, SQLState: "22012",
				Message: "ERROR:  division by zero\nDETAIL:  d\nHINT:  h"},
		},
		{
			name:    "non-pgerr error",
			query:   "SELECT 1",
			execErr: errors.New("connection lost"),
			want:    Outcome{JobID: 42, Status: Failed, Message: "ERROR:  connection lost", SQLState: "XX000"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(Task{JobID: 42, Query: tc.query})
			f.session.results[tc.query] = tc.execErr

			require.NoError(t, f.worker.Run())
			assert.Equal(t, []Outcome{tc.want}, f.queue.settled)
			if tc.execErr != nil {
				var pgErr *pgerr.Error
				if errors.As(tc.execErr, &pgErr) {
					assert.Equal(t, pgErr.Psql(tc.query), f.queue.settled[0].Message)
				}
			}
		})
	}
}

func TestRunFailures(t *testing.T) {
	errClaim := errors.New("claim failed")
	errSettle := errors.New("settle failed")
	errReset := errors.New("reset failed")
	tasks := []Task{{JobID: 1, Query: "SELECT 1"}, {JobID: 2, Query: "SELECT 2"}}
	tests := []struct {
		name      string
		claimErr  error
		settleErr error
		resetErr  error
		wantErr   error
		wantLog   callLog
		settled   []int64
		done      []int64
	}{
		{
			name:     "claim error settles nothing",
			claimErr: errClaim,
			wantErr:  errClaim,
			wantLog:  callLog{"claim: error"},
		},
		{
			// tried once more alone: the failed claim changed nothing
			name:      "settle error stops the worker before Done",
			settleErr: errSettle,
			wantErr:   errSettle,
			wantLog:   callLog{"claim 1", "execute SELECT 1", "reset", "settle 1 with the claim: error", "settle 1"},
			settled:   []int64{1},
		},
		{
			name:     "reset error still settles and calls Done, then stops the worker",
			resetErr: errReset,
			wantErr:  errReset,
			wantLog:  callLog{"claim 1", "execute SELECT 1", "reset", "settle 1", "done 1"},
			settled:  []int64{1},
			done:     []int64{1},
		},
		{
			name:      "settle and reset errors report the settle error",
			settleErr: errSettle,
			resetErr:  errReset,
			wantErr:   errSettle,
			wantLog:   callLog{"claim 1", "execute SELECT 1", "reset", "settle 1"},
			settled:   []int64{1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(tasks...)
			f.queue.claimErr = tc.claimErr
			f.queue.settleErr = tc.settleErr
			f.session.resetErr = tc.resetErr

			err := f.worker.Run()
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.wantErr)
			assert.Equal(t, tc.wantLog, f.log)
			var settled []int64
			for _, o := range f.queue.settled {
				settled = append(settled, o.JobID)
			}
			assert.Equal(t, tc.settled, settled)
			assert.Equal(t, tc.done, f.queue.done, "done")
		})
	}
}

func TestRunHonoursStopRequest(t *testing.T) {
	tasks := []Task{{JobID: 1, Query: "SELECT 1"}, {JobID: 2, Query: "SELECT 2"}}
	tests := []struct {
		name      string
		stopAfter int // executed tasks after which a stop is requested
		wantLog   callLog
	}{
		{name: "before the first claim", stopAfter: 0, wantLog: nil},
		{
			name:      "between tasks",
			stopAfter: 1,
			wantLog:   callLog{"claim 1", "execute SELECT 1", "reset", "settle 1", "done 1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(tasks...)
			f.worker.StopRequested = func() bool { return len(f.session.executed) >= tc.stopAfter }

			require.NoError(t, f.worker.Run())
			assert.Equal(t, tc.wantLog, f.log)
			assert.Equal(t, tc.stopAfter, f.queue.claims)
		})
	}
}

func TestRunRecordsCancelByCancelTaskAsCanceled(t *testing.T) {
	canceledErr := &pgerr.Error{Severity: "ERROR", Code: "57014", Message: "canceling statement due to user request"}
	f := newFixture(Task{JobID: 1, Query: "SELECT pg_sleep(60)", Table: 16384}, Task{JobID: 2, Query: "SELECT pg_sleep(61)"})
	f.session.results = map[string]error{"SELECT pg_sleep(60)": canceledErr, "SELECT pg_sleep(61)": canceledErr}
	f.queue.canceled = map[int64]bool{1: true}

	require.NoError(t, f.worker.Run())
	require.Len(t, f.queue.settled, 2)
	assert.Equal(t, Outcome{JobID: 1, Table: 16384, Status: Canceled, Message: "Canceled by user", SQLState: "57014"}, f.queue.settled[0])
	// A cancel from elsewhere (pg_cancel_backend) is an ordinary failure.
	assert.Equal(t, Failed, f.queue.settled[1].Status)
	assert.Equal(t, "ERROR:  canceling statement due to user request", f.queue.settled[1].Message)
}

// Once cancel_task() accepted, its caller was told the task ends canceled,
// whatever the query itself ended with.
func TestRunRecordsAcceptedCancelAsCanceledWhateverTheError(t *testing.T) {
	tests := []struct {
		name    string
		execErr error
	}{
		{name: "another SQLSTATE", execErr: pgerr.New("25001", "boom")},
		{name: "non-pgerr error", execErr: errors.New("connection lost")},
		{name: "success", execErr: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := Task{JobID: 5, Query: "SELECT 5", Table: 16384}
			f := newFixture(task)
			f.session.results[task.Query] = tc.execErr
			f.queue.canceled = map[int64]bool{5: true}

			require.NoError(t, f.worker.Run())
			want := Outcome{JobID: 5, Table: 16384, Status: Canceled, Message: "Canceled by user", SQLState: "57014"}
			assert.Equal(t, []Outcome{want}, f.queue.settled)
			assert.Equal(t, []int64{5}, f.queue.done)
		})
	}
}

func TestRunDoesNotSettleASuccessRecordedWithTheTask(t *testing.T) {
	tasks := []Task{{JobID: 1, Query: "CREATE INDEX i ON t (v)", Table: 16384}, {JobID: 2, Query: "SELECT 2"}}
	f := newFixture(tasks...)
	f.session.recorded[tasks[0].Query] = true

	require.NoError(t, f.worker.Run())
	assert.Equal(t, callLog{
		"claim 1", "execute CREATE INDEX i ON t (v)", "reset", "done 1",
		"claim 2", "execute SELECT 2", "reset", "settle 2 with the claim",
		"claim: none",
	}, f.log)
	assert.Equal(t, []Outcome{{JobID: 2, Status: Succeeded}}, f.queue.settled)
	assert.Equal(t, []int64{1, 2}, f.queue.done)
	assert.Equal(t, tasks, f.session.executed, "Execute gets the whole task")
}
