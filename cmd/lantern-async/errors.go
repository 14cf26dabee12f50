package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Exit statuses.
const (
	exitOK          = 0   // every task succeeded, or the command did what it was asked
	exitTask        = 1   // a task failed, was canceled, is not visible, or was not canceled
	exitUsage       = 2   // bad flags or arguments
	exitServer      = 3   // cannot connect, or the server returned an error
	exitInterrupted = 130 // SIGINT or SIGTERM
)

// usageError is a mistake on the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// dbError is an error from the connection or the server; op says what was
// being done when it is not obvious from the server's message.
type dbError struct {
	op  string
	err error
}

func (e *dbError) Error() string {
	if e.op == "" {
		return describeServerError(e.err)
	}
	return e.op + ": " + describeServerError(e.err)
}
func (e *dbError) Unwrap() error { return e.err }

// wrapDB marks err (when not nil) as a connection or server error.
func wrapDB(op string, err error) error {
	if err == nil {
		return nil
	}
	return &dbError{op: op, err: err}
}

// statusError ends the command with code, saying msg ("": what to say was
// already printed).
type statusError struct {
	code int
	msg  string
}

func (e statusError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.msg
}

// exitCode maps the error a command returned to the exit status.
func exitCode(ctx context.Context, err error) int {
	var se statusError
	var ue usageError
	var de *dbError
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &se):
		return se.code
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &de), errors.As(err, &pe):
		return exitServer
	default: // cobra's own: unknown command, wrong number of arguments
		return exitUsage
	}
}

// errorText is what to print after "lantern-async: " for err ("" when
// nothing: a statusError was already explained).
func errorText(err error) string {
	var se statusError
	var de *dbError
	switch {
	case errors.As(err, &se):
		return se.msg
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.As(err, &de):
		return de.Error()
	}
	return describeServerError(err)
}

// describeServerError renders a server error the way psql does, with its
// SQLSTATE on the first line: "ERROR:  message (SQLSTATE 42501)", then the
// DETAIL and HINT lines. Other errors are their Error().
func describeServerError(err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:  %s (SQLSTATE %s)", pe.Severity, pe.Message, pe.Code)
	if pe.Detail != "" {
		fmt.Fprintf(&b, "\nDETAIL:  %s", pe.Detail)
	}
	if pe.Hint != "" {
		fmt.Fprintf(&b, "\nHINT:  %s", pe.Hint)
	}
	return b.String()
}
