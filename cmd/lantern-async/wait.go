package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) waitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait JOBID...",
		Short: "Wait for tasks to finish, with their progress",
		Long: `Wait until every task given has finished.

On a terminal each task shows a live progress bar (phase, percent, elapsed
time and an estimate of the time left in the phase, for statements that
report progress such as CREATE INDEX, VACUUM, CLUSTER, ANALYZE and COPY).
Otherwise one line is printed when a task starts or changes phase, and one
when it ends: "task 42 succeeded in 3.2s" or "task 42 failed: ERROR: ...".

Ctrl-C stops waiting; the tasks keep running (see the cancel command).

Exit status: 0 when every task succeeded; 1 when one failed, was canceled
or cannot be seen; 3 on a connection or server error; 130 when interrupted.`,
		Example: `  lantern-async wait 42
  lantern-async wait 42 43 44 && echo all done`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseJobIDs(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db store) error {
				return a.waitFor(cmd.Context(), db, ids)
			})
		},
	}
}

// parseJobIDs parses positive jobids, dropping repeats.
func parseJobIDs(args []string) ([]int64, error) {
	var ids []int64
	seen := map[int64]bool{}
	for _, s := range args {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 {
			return nil, usagef("not a jobid: %q", s)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// reporter shows what wait sees.
type reporter interface {
	update(st taskState) // a task that has not finished
	finish(st taskState) // a task that ended, or cannot be seen
	stop()               // waiting ends early
}

// waitFor waits for ids and reports them; its error carries the exit status.
func (a *app) waitFor(ctx context.Context, db store, ids []int64) error {
	var rep reporter = &lineReporter{out: a.stdout, last: map[int64]string{}}
	if a.stdoutTerminal {
		rep = newBarReporter(a.stdout)
	}
	w := waiter{db: db, rep: rep, interval: a.pollInterval}
	left, err := w.run(ctx, ids)
	if len(left) > 0 {
		rep.stop()
	}
	switch {
	case len(left) > 0 && ctx.Err() != nil:
		fmt.Fprintln(a.stderr, interruptMessage(left))
		return statusError{code: exitInterrupted}
	case err != nil:
		return err
	case w.failed:
		return statusError{code: exitTask}
	}
	return nil
}

// waiter is the wait loop: lantern.wait_task on the first unfinished task
// with a short timeout (so that it returns when that task ends, or after
// interval), then one snapshot of every unfinished task. Each statement is
// its own transaction: no snapshot is held while waiting.
type waiter struct {
	db       store
	rep      reporter
	interval time.Duration
	failed   bool // a task did not succeed
}

// run returns the tasks left unfinished (when interrupted or on an error).
func (w *waiter) run(ctx context.Context, ids []int64) ([]int64, error) {
	left := ids
	for len(left) > 0 {
		start := time.Now()
		if err := w.db.WaitTask(ctx, left[0], w.interval); err != nil {
			return left, err
		}
		states, err := w.db.Snapshot(ctx, left)
		if err != nil {
			return left, err
		}
		next := w.observe(states)
		if len(next) == len(left) {
			// Nothing ended: never poll faster than interval, even when
			// wait_task returns early.
			if err := sleepCtx(ctx, w.interval-time.Since(start)); err != nil {
				return left, err
			}
		}
		left = next
	}
	return nil, nil
}

// observe reports states and returns the jobids still unfinished.
func (w *waiter) observe(states []taskState) []int64 {
	var left []int64
	for _, st := range states {
		if st.Visible && !isFinal(st.Status) && st.Status != "" {
			w.rep.update(st)
			left = append(left, st.JobID)
			continue
		}
		if st.Status != "succeeded" {
			w.failed = true
		}
		w.rep.finish(st)
	}
	return left
}

func isFinal(status string) bool {
	return status == "succeeded" || status == "failed" || status == "canceled"
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// outcomeLine is the line that says how a task ended.
func outcomeLine(st taskState) string {
	switch {
	case !st.Visible:
		return fmt.Sprintf("task %d not found: it does not exist or belongs to another role", st.JobID)
	case st.Status == "succeeded":
		return fmt.Sprintf("task %d succeeded in %s", st.JobID, formatDuration(st.Duration))
	case st.Status == "canceled":
		return fmt.Sprintf("task %d canceled after %s", st.JobID, formatDuration(st.Duration))
	case st.Status == "failed":
		return fmt.Sprintf("task %d failed: %s", st.JobID, withSQLState(st.ErrorMessage, st.SQLState))
	default:
		return fmt.Sprintf("task %d has no status: it is not a task lantern_async runs", st.JobID)
	}
}

// withSQLState appends " (SQLSTATE x)" to the first line of a psql-style
// error text (the lines after it, such as LINE 1: and its caret, stay as
// they are).
func withSQLState(msg, sqlstate string) string {
	msg = strings.TrimRight(msg, "\n")
	if sqlstate == "" {
		return msg
	}
	first, rest, multi := strings.Cut(msg, "\n")
	first += " (SQLSTATE " + sqlstate + ")"
	if multi {
		return first + "\n" + rest
	}
	return first
}

// interruptMessage says that the tasks go on, and how to cancel them.
func interruptMessage(left []int64) string {
	ids := make([]string, len(left))
	for i, id := range left {
		ids[i] = strconv.FormatInt(id, 10)
	}
	if len(ids) == 1 {
		return fmt.Sprintf("stopped waiting; task %s keeps running. To cancel it: lantern-async cancel %s", ids[0], ids[0])
	}
	return fmt.Sprintf("stopped waiting; tasks %s keep running. To cancel them: lantern-async cancel %s",
		strings.Join(ids, ", "), strings.Join(ids, " "))
}
