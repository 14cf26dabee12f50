package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Submit calls lantern.async_task positionally when only the arguments
// every version has are used (query, job_name, timeout), so the client
// keeps working against servers older than 0.5.0; otherwise in named
// notation (submitNamed).
func (s *pgStore) Submit(ctx context.Context, sub submission) (int64, error) {
	var name *string
	if sub.Name != "" {
		name = &sub.Name
	}
	if flags, _ := newerArguments(sub); len(flags) > 0 {
		return s.submitNamed(ctx, sub, name)
	}
	var row pgx.Row
	switch {
	case sub.Timeout != "":
		row = s.conn.QueryRow(ctx, "SELECT lantern.async_task($1, $2, $3::interval)", sub.Query, name, sub.Timeout)
	case name != nil:
		row = s.conn.QueryRow(ctx, "SELECT lantern.async_task($1, $2)", sub.Query, name)
	default:
		row = s.conn.QueryRow(ctx, "SELECT lantern.async_task($1)", sub.Query)
	}
	var jobid int64
	return jobid, wrapDB("", row.Scan(&jobid))
}

// newerArguments names the flags of sub that need lantern_async 0.5.0, and
// the arguments of lantern.async_task they set; none when sub uses none.
func newerArguments(sub submission) (flags, params []string) {
	if sub.At != "" || sub.AtIn != "" {
		flags, params = append(flags, "--at"), append(params, "run_after")
	}
	if sub.Retries > 0 {
		flags, params = append(flags, "--retries"), append(params, "retries")
	}
	if len(sub.After) > 0 {
		flags, params = append(flags, "--after"), append(params, "depends_on")
	}
	return flags, params
}

// namedCall is the call of lantern.async_task in named notation that
// passes only the arguments sub uses, and its parameters.
func namedCall(sub submission, name *string) (string, []any) {
	var timeout *string
	if sub.Timeout != "" {
		timeout = &sub.Timeout
	}
	args := []any{sub.Query, name, timeout}
	param := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	var b strings.Builder
	b.WriteString("SELECT lantern.async_task($1, job_name => $2, timeout => $3::pg_catalog.interval")
	switch {
	case sub.AtIn != "": // on the server's clock
		b.WriteString(", run_after => pg_catalog.clock_timestamp() + " + param(sub.AtIn) + "::pg_catalog.interval")
	case sub.At != "":
		b.WriteString(", run_after => " + param(sub.At) + "::pg_catalog.timestamptz")
	}
	if sub.Retries > 0 {
		b.WriteString(", retries => " + param(int32(sub.Retries)) + "::pg_catalog.int4")
	}
	if len(sub.After) > 0 {
		b.WriteString(", depends_on => " + param(sub.After) + "::pg_catalog.int8[]")
	}
	b.WriteString(")")
	return b.String(), args
}

// submitNamed passes run_after, retries or depends_on in named notation,
// which only 0.5.0 on accepts: an older lantern.async_task does not match
// (42883), and the error then says to update the extension.
func (s *pgStore) submitNamed(ctx context.Context, sub submission, name *string) (int64, error) {
	sql, args := namedCall(sub, name)
	var jobid int64
	err := s.conn.QueryRow(ctx, sql, args...).Scan(&jobid)
	flags, params := newerArguments(sub)
	return jobid, wrapDB("", withUpdateHint(err, flags, params))
}

// withUpdateHint gives "no such function" (42883, from a
// lantern.async_task older than 0.5.0, which has none of params) the hint
// to update the extension, naming the flags that need it.
func withUpdateHint(err error, flags, params []string) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42883" {
		return err
	}
	verb := "needs"
	if len(flags) > 1 {
		verb = "need"
	}
	old := *pe
	old.Hint = fmt.Sprintf("%s %s lantern_async 0.5.0 or later (lantern.async_task with %s). "+
		"To update it, as the extension's owner: ALTER EXTENSION lantern_async UPDATE;",
		joinAnd(flags), verb, joinAnd(params))
	return &old
}

// joinAnd joins words as a sentence does: "a", "a and b", "a, b and c".
func joinAnd(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

func (s *pgStore) ParseTime(ctx context.Context, text string) (float64, error) {
	var epoch float64
	err := s.conn.QueryRow(ctx, "SELECT extract(epoch FROM $1::pg_catalog.timestamptz)::pg_catalog.float8", text).Scan(&epoch)
	return epoch, wrapDB("", err)
}
