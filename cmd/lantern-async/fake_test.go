package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// fakeStore plays a script: each Snapshot returns the next frame (the last
// one again once the script is over) for the jobids asked.
type fakeStore struct {
	mu        sync.Mutex
	frames    []map[int64]taskState
	waits     []int64 // the jobid of each WaitTask call
	onWait    func(n int, ctx context.Context) error
	submitted []submission
	rows      []taskRow
	deps      map[int64][]dependency // what Details reads beside a row of rows
	attempts  map[int64][]attempt
	listed    [][]string
	canceled  map[int64]bool
	times     map[string]float64 // what ParseTime reads; anything else is a syntax error
	parsed    []string
	err       error // returned by every call when set
	closed    bool
}

func (f *fakeStore) Submit(_ context.Context, s submission) (int64, error) {
	f.submitted = append(f.submitted, s)
	return 7, f.err
}

func (f *fakeStore) WaitTask(ctx context.Context, jobid int64, _ time.Duration) error {
	f.mu.Lock()
	f.waits = append(f.waits, jobid)
	n := len(f.waits)
	f.mu.Unlock()
	if f.onWait != nil {
		if err := f.onWait(n, ctx); err != nil {
			return err
		}
	}
	return f.err
}

func (f *fakeStore) Snapshot(_ context.Context, ids []int64) ([]taskState, error) {
	if f.err != nil {
		return nil, f.err
	}
	frame := f.frames[0]
	if len(f.frames) > 1 {
		f.frames = f.frames[1:]
	}
	var out []taskState
	for _, id := range ids {
		st, ok := frame[id]
		if !ok {
			st = taskState{JobID: id}
		}
		out = append(out, st)
	}
	return out, nil
}

func (f *fakeStore) List(_ context.Context, statuses []string) ([]taskRow, error) {
	f.listed = append(f.listed, statuses)
	return f.rows, f.err
}

func (f *fakeStore) Task(_ context.Context, jobid int64) (*taskRow, error) {
	for _, r := range f.rows {
		if r.JobID == jobid {
			return &r, f.err
		}
	}
	return nil, f.err
}

func (f *fakeStore) Details(ctx context.Context, jobid int64) (*taskDetails, error) {
	r, err := f.Task(ctx, jobid)
	if r == nil {
		return nil, err
	}
	d := &taskDetails{taskRow: *r, Dependencies: []dependency{}, Attempts: []attempt{}}
	d.Dependencies = append(d.Dependencies, f.deps[jobid]...)
	d.Attempts = append(d.Attempts, f.attempts[jobid]...)
	return d, err
}

func (f *fakeStore) Cancel(_ context.Context, jobid int64) (bool, error) {
	return f.canceled[jobid], f.err
}

func (f *fakeStore) ParseTime(_ context.Context, text string) (float64, error) {
	f.parsed = append(f.parsed, text)
	if epoch, ok := f.times[text]; ok {
		return epoch, f.err
	}
	return 0, &pgconn.PgError{Severity: "ERROR", Code: "22007",
		Message: fmt.Sprintf("invalid input syntax for type timestamp with time zone: %q", text)}
}

func (f *fakeStore) Close() { f.closed = true }

// result is what a run printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// runWith runs the command line against db, with stdin and whether stdout
// is a terminal.
func runWith(t *testing.T, db *fakeStore, stdin string, terminal bool, args ...string) result {
	t.Helper()
	return runCtx(t, context.Background(), db, stdin, terminal, args...)
}

func runCtx(t *testing.T, ctx context.Context, db *fakeStore, stdin string, terminal bool, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{
		stdin:          strings.NewReader(stdin),
		stdout:         &out,
		stderr:         &errOut,
		stdinTerminal:  stdin == "",
		stdoutTerminal: terminal,
		pollInterval:   time.Millisecond,
		connect: func(context.Context, string) (store, error) {
			if db == nil {
				return nil, wrapDB("cannot connect", &pgconn.PgError{Severity: "FATAL", Code: "28000", Message: `role "x" does not exist`})
			}
			return db, nil
		},
	}
	code := a.run(ctx, args)
	return result{code, out.String(), errOut.String()}
}

func ptr[T any](v T) *T { return &v }

func running(id int64, phase string, pct float64, elapsed time.Duration) taskState {
	return taskState{JobID: id, Visible: true, Status: "running",
		Progress: &progress{Command: "CREATE INDEX", Phase: phase, Percent: ptr(pct), Elapsed: elapsed}}
}

func ended(id int64, status string, d time.Duration) taskState {
	return taskState{JobID: id, Visible: true, Status: status, Duration: d}
}
