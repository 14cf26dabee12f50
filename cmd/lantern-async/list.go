package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

var (
	allStatuses        = []string{"pending", "running", "succeeded", "failed", "canceled"}
	unfinishedStatuses = []string{"pending", "running"}
)

type listFlags struct {
	all      bool
	statuses []string
	output   string
}

func (a *app) listCommand() *cobra.Command {
	var f listFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks (by default the unfinished ones)",
		Long: `List the tasks the connecting role can see, in jobid order: by default
the unfinished ones (pending, running); --all lists every task, --status
those with the statuses given (pending, running, succeeded, failed,
canceled; repeat the flag or separate them with commas).

A due column follows status when a pending task may not start yet: "in
4m10s" (submit --at, or a retried task's next attempt), or "after 12, 13"
when it waits for those tasks to succeed (submit --after).

--output json prints every column, the full query, the SQLSTATE of a
failed or canceled task, a pending task's due time and the tasks it still
waits for (waits_for).`,
		Example: `  lantern-async list
  lantern-async list --status failed --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			statuses, err := listStatuses(f)
			if err != nil {
				return err
			}
			if err := checkOutput(f.output); err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db store) error {
				rows, err := db.List(cmd.Context(), statuses)
				if err != nil {
					return err
				}
				if f.output == outputJSON {
					if rows == nil {
						rows = []taskRow{}
					}
					return writeJSON(a.stdout, rows)
				}
				renderList(a.stdout, rows)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&f.all, "all", "a", false, "list every task")
	cmd.Flags().StringSliceVarP(&f.statuses, "status", "s", nil, "list the tasks with these statuses")
	cmd.Flags().StringVarP(&f.output, "output", "o", outputTable, "output format: table or json")
	return cmd
}

// listStatuses is the statuses to list; none means every task.
func listStatuses(f listFlags) ([]string, error) {
	if len(f.statuses) == 0 {
		if f.all {
			return nil, nil
		}
		return unfinishedStatuses, nil
	}
	var out []string
	for _, s := range f.statuses {
		s = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(allStatuses, s) {
			return nil, usagef("unknown status %q (one of %s)", s, strings.Join(allStatuses, ", "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}
