package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) cancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel JOBID...",
		Short: "Cancel pending or running tasks",
		Long: `Cancel each task with lantern.cancel_task() and say whether it was
canceled. A pending task never runs; a running one is stopped and rolled
back. A task that has finished (or is finishing) keeps its outcome.

Exit status: 0 when every task was canceled; 1 when one was not (not
found, or already finished); 3 on a connection or server error (such as
42501 for another role's task).`,
		Example: `  lantern-async cancel 42 43`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseJobIDs(args)
			if err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db store) error {
				return a.cancelAll(cmd.Context(), db, ids)
			})
		},
	}
}

// cancelAll cancels each task; its error carries the worst exit status.
func (a *app) cancelAll(ctx context.Context, db store, ids []int64) error {
	worst := exitOK
	for _, id := range ids {
		code, err := a.cancelOne(ctx, db, id)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			fmt.Fprintf(a.stderr, "lantern-async: %s\n", errorText(err))
		}
		worst = max(worst, code)
	}
	if worst != exitOK {
		return statusError{code: worst}
	}
	return nil
}

// cancelOne cancels one task and says how it went; it returns the exit
// status for it.
func (a *app) cancelOne(ctx context.Context, db store, id int64) (int, error) {
	ok, err := db.Cancel(ctx, id)
	if err != nil {
		return exitServer, err
	}
	if ok {
		fmt.Fprintf(a.stdout, "task %d canceled\n", id)
		return exitOK, nil
	}
	row, err := db.Task(ctx, id)
	if err != nil {
		return exitServer, err
	}
	fmt.Fprintln(a.stdout, notCanceledLine(id, row))
	return exitTask, nil
}

// notCanceledLine says why cancel_task returned false for the task (row:
// nil when the caller cannot see it).
func notCanceledLine(id int64, row *taskRow) string {
	switch {
	case row == nil:
		return fmt.Sprintf("task %d not canceled: not found (it does not exist or belongs to another role)", id)
	case isFinal(deref(row.Status)):
		return fmt.Sprintf("task %d not canceled: it has already finished (%s)", id, deref(row.Status))
	default:
		return fmt.Sprintf("task %d not canceled: it is finishing", id)
	}
}
