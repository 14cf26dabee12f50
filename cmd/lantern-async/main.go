// Command lantern-async submits, lists, waits for, shows and cancels
// lantern_async tasks (see "Client: lantern-async" in README.md).
//
// Exit status: 0 success; 1 a task did not succeed (failed, canceled, not
// visible) or was not canceled; 2 usage error; 3 connection or server
// error; 130 interrupted.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// app is what the commands share: the standard streams, whether they are
// terminals, and how to reach the server. Tests replace connect with a fake.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	stdinTerminal  bool
	stdoutTerminal bool
	connect        func(ctx context.Context, dsn string) (store, error)
	pollInterval   time.Duration

	dsn string // --dsn
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{
		stdin:          os.Stdin,
		stdout:         os.Stdout,
		stderr:         os.Stderr,
		stdinTerminal:  term.IsTerminal(int(os.Stdin.Fd())),
		stdoutTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		connect:        connectStore,
		pollInterval:   250 * time.Millisecond,
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// withStore connects to the server (--dsn), runs f and closes the
// connection.
func (a *app) withStore(ctx context.Context, f func(db store) error) error {
	db, err := a.connect(ctx, a.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return f(db)
}

// run executes the command line args and returns the exit status.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(ctx, err)
	if msg := errorText(err); msg != "" {
		fmt.Fprintf(a.stderr, "lantern-async: %s\n", msg)
	}
	if code == exitUsage && cmd != nil {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "lantern-async",
		Short: "Submit, watch and cancel lantern_async background tasks",
		Long: `lantern-async submits SQL to run in the background inside PostgreSQL
(lantern.async_task), lists and shows tasks, waits for them with a progress
bar, and cancels them.

The connection comes from --dsn, or else from the libpq environment
variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, ...).

Exit status: 0 success; 1 a task did not succeed (failed, canceled, not
visible) or was not canceled; 2 usage error; 3 connection or server error;
130 interrupted.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.PersistentFlags().StringVar(&a.dsn, "dsn", "",
		"connection string (URL or key=value); default: the libpq environment variables")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.submitCommand(), a.waitCommand(), a.listCommand(),
		a.showCommand(), a.cancelCommand())
	return root
}
