package main

import (
	"github.com/spf13/cobra"
)

func (a *app) showCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show JOBID",
		Short: "Show one task, with its error, SQLSTATE, dependencies and attempts",
		Long: `Show a task's row as psql's expanded display (\x) does, then its
error_message as psql prints an error. The sqlstate field is the SQLSTATE
of a failed or canceled task (57014 for canceled).

Then, when it has any, the tasks it depends on (submit --after) with their
status, and its attempts (a task submitted with --retries): number, start,
duration, SQLSTATE and the first line of the error (none: it succeeded).
--output json has them in full, as "dependencies" and "attempts".

Exit status 1 when the task does not exist or belongs to another role.`,
		Example: `  lantern-async show 42
  lantern-async show 42 --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseJobIDs(args)
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db store) error {
				row, err := db.Details(cmd.Context(), ids[0])
				if err != nil {
					return err
				}
				if row == nil {
					return statusError{exitTask, outcomeLine(taskState{JobID: ids[0]})}
				}
				if output == outputJSON {
					return writeJSON(a.stdout, row)
				}
				renderShow(a.stdout, *row)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", outputTable, "output format: table or json")
	return cmd
}
