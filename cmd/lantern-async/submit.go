package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

type submitFlags struct {
	name    string
	wait    bool
	timeout string
	at      string
	retries int
	after   []string
	file    string
}

const submitLong = `Queue SQL with lantern.async_task() and print its jobid.

The SQL is the argument, or the contents of --file, or standard input when
the argument is "-" or absent and standard input is not a terminal. It runs
like psql -c: several statements separated by ";" are one transaction.

--timeout is the task's own time limit, a Go duration (90s, 1h30m) or a
PostgreSQL interval ('2 hours'); without it the server's
lantern_async.task_timeout applies. --wait then waits like "wait".

--at is when the task may start (it stays pending until then): an RFC 3339
time (2026-12-07T22:00:00Z), anything PostgreSQL's timestamptz input takes
('tomorrow 03:00', in the session's TimeZone), or +D, a Go duration from
now on the server's clock (+90s, +2h). A time in the past means now.

--retries N lets a transient failure (a serialization failure or a
deadlock, say) be retried up to N more times (0 to 100), with backoff, as
long as nothing of the task has committed; "show" lists its attempts.

--after JOBID starts the task only once that task has succeeded (repeat
the flag, or separate jobids with commas, for several); if one fails or is
canceled, this task never runs and fails.

--at, --retries and --after need lantern_async 0.5.0 or later (run_after,
retries and depends_on of lantern.async_task).`

const submitExample = `  lantern-async submit --name 'index items' 'CREATE INDEX ON items (v)'
  lantern-async submit --wait --timeout 2h --file build_index.sql
  echo 'VACUUM items' | lantern-async submit
  lantern-async submit --at +2h --name 'nightly reindex' 'REINDEX INDEX items_v_idx'
  lantern-async submit --retries 3 'UPDATE counters SET n = n + 1'
  lantern-async submit --after 41,42 'CREATE INDEX ON items (v)'`

func (a *app) submitCommand() *cobra.Command {
	var f submitFlags
	cmd := &cobra.Command{
		Use:     "submit [flags] [SQL | -]",
		Short:   "Queue SQL to run in the background; prints its jobid",
		Long:    submitLong,
		Example: submitExample,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sub, err := a.submission(f, args)
			if err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(db store) error {
				// A time the server cannot read is refused before
				// anything is queued.
				if err := checkAt(cmd.Context(), db, sub.At); err != nil {
					return err
				}
				jobid, err := db.Submit(cmd.Context(), sub)
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, jobid)
				if !f.wait {
					return nil
				}
				return a.waitFor(cmd.Context(), db, []int64{jobid})
			})
		},
	}
	cmd.Flags().StringVarP(&f.name, "name", "n", "", "job name, for people (lantern.tasks.job_name)")
	cmd.Flags().BoolVarP(&f.wait, "wait", "w", false, "wait for the task to finish, like the wait command")
	cmd.Flags().StringVarP(&f.timeout, "timeout", "t", "", "the task's time limit: a Go duration or a PostgreSQL interval")
	cmd.Flags().StringVar(&f.at, "at", "", "start no earlier than this: an RFC 3339 or PostgreSQL time, or +D (a Go duration from now)")
	cmd.Flags().IntVar(&f.retries, "retries", 0, "retry a transient failure up to `N` more times (0 to 100)")
	cmd.Flags().StringSliceVar(&f.after, "after", nil, "start only once task `JOBID` has succeeded (repeat, or separate jobids with commas)")
	cmd.Flags().StringVarP(&f.file, "file", "f", "", `read the SQL from this file ("-": standard input)`)
	return cmd
}

// submission builds what to submit from the flags and arguments.
func (a *app) submission(f submitFlags, args []string) (submission, error) {
	query, err := a.readSQL(f.file, args)
	if err != nil {
		return submission{}, err
	}
	timeout, err := intervalText(f.timeout)
	if err != nil {
		return submission{}, err
	}
	at, atIn, err := atText(f.at)
	if err != nil {
		return submission{}, err
	}
	if err := checkRetries(f.retries); err != nil {
		return submission{}, err
	}
	after, err := afterJobIDs(f.after)
	if err != nil {
		return submission{}, err
	}
	return submission{Query: query, Name: f.name, Timeout: timeout, At: at, AtIn: atIn,
		Retries: f.retries, After: after}, nil
}

// readSQL returns the SQL to submit: from the argument, --file, or stdin.
func (a *app) readSQL(file string, args []string) (string, error) {
	var src io.Reader
	switch {
	case file != "" && len(args) > 0:
		return "", usagef("give the SQL either as an argument or with --file, not both")
	case file == "-" || (file == "" && len(args) > 0 && args[0] == "-"):
		src = a.stdin
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usagef("%v", err)
		}
		return nonEmptySQL(string(b))
	case len(args) > 0:
		return nonEmptySQL(args[0])
	case a.stdinTerminal:
		return "", usagef("no SQL: give it as an argument, with --file, or on standard input")
	default:
		src = a.stdin
	}
	b, err := io.ReadAll(src)
	if err != nil {
		return "", usagef("reading standard input: %v", err)
	}
	return nonEmptySQL(string(b))
}

func nonEmptySQL(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", usagef("the SQL is empty")
	}
	return s, nil
}

// intervalText turns --timeout into interval text for the server: a Go
// duration becomes microseconds, anything else is left to PostgreSQL's
// interval input (which reports its own syntax errors).
func intervalText(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < time.Microsecond {
			return "", usagef("--timeout must be positive, not %s (leave it out for the server's lantern_async.task_timeout)", s)
		}
		return fmt.Sprintf("%d microseconds", d.Microseconds()), nil
	}
	return s, nil
}
