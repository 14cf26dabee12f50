package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// atText splits --at into what the server is sent: at, timestamptz text
// (an RFC 3339 time, or anything else for PostgreSQL's timestamptz input
// to read), or atIn, interval text from a relative "+D" (a Go duration,
// added to the server's clock). Both are "" when --at is absent.
func atText(s string) (at, atIn string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", nil
	}
	rel, ok := strings.CutPrefix(s, "+")
	if !ok {
		return s, "", nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(rel))
	if err != nil {
		return "", "", usagef("--at %s: after \"+\" give a Go duration, like +90s or +2h", s)
	}
	if d < 0 {
		return "", "", usagef("--at %s: the time from now must not be negative (leave --at out to start now)", s)
	}
	return "", fmt.Sprintf("%d microseconds", d.Microseconds()), nil
}

// checkAt asks the server to read an absolute --at (nothing to check when
// it is absent or relative): a time it cannot read, or infinity, is a
// usage error.
func checkAt(ctx context.Context, db store, at string) error {
	if at == "" {
		return nil
	}
	epoch, err := db.ParseTime(ctx, at)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") { // data exception: the input
		return usagef("--at %q is not a time: %s (SQLSTATE %s)", at, pe.Message, pe.Code)
	}
	if err != nil {
		return err
	}
	if math.IsInf(epoch, 1) {
		return usagef("--at %q: a task must start at some time, not never", at)
	}
	return nil
}
