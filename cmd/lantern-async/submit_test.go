package main

import (
	"context"
	"math"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIntervalText(t *testing.T) {
	for in, want := range map[string]string{
		"":         "",
		"90s":      "90000000 microseconds",
		"1h30m":    "5400000000 microseconds",
		"2 hours":  "2 hours",
		"1 day 3h": "1 day 3h",
		" 250ms  ": "250000 microseconds",
	} {
		got, err := intervalText(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"0s", "-5s", "0"} {
		_, err := intervalText(bad)
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "--timeout must be positive")
	}
}

func TestAtText(t *testing.T) {
	for _, tc := range []struct{ in, at, atIn string }{
		{"", "", ""},
		{" +90s ", "", "90000000 microseconds"},
		{"+2h", "", "7200000000 microseconds"},
		{"+0s", "", "0 microseconds"},
		{"2026-12-07T22:00:00Z", "2026-12-07T22:00:00Z", ""},
		{"tomorrow 03:00", "tomorrow 03:00", ""},
	} {
		at, atIn, err := atText(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.at, at, tc.in)
		assert.Equal(t, tc.atIn, atIn, tc.in)
	}
	for in, want := range map[string]string{
		"+soon": `after "+" give a Go duration`,
		"+-5s":  "must not be negative",
		"+":     `after "+" give a Go duration`,
	} {
		_, _, err := atText(in)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), want, in)
	}
}

func TestSubmitAt(t *testing.T) {
	db := &fakeStore{times: map[string]float64{"tomorrow 03:00": 1.8e9, "infinity": math.Inf(1)}}
	r := runWith(t, db, "", false, "submit", "--at", "tomorrow 03:00", "--name", "n", "SELECT 1")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, []submission{{Query: "SELECT 1", Name: "n", At: "tomorrow 03:00"}}, db.submitted)
	assert.Equal(t, []string{"tomorrow 03:00"}, db.parsed, "read by the server first")

	r = runWith(t, db, "", false, "submit", "--at", "+2h", "--timeout", "1m", "SELECT 2")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, submission{Query: "SELECT 2", Timeout: "60000000 microseconds", AtIn: "7200000000 microseconds"}, db.submitted[1])
	assert.Len(t, db.parsed, 1, "a relative time is the server's clock + an interval")

	// Bad values: a usage error, and nothing submitted.
	for arg, want := range map[string]string{
		"soonish":  `lantern-async: --at "soonish" is not a time: invalid input syntax for type timestamp with time zone: "soonish" (SQLSTATE 22007)`,
		"infinity": `lantern-async: --at "infinity": a task must start at some time, not never`,
		"+later":   `lantern-async: --at +later: after "+" give a Go duration, like +90s or +2h`,
	} {
		r = runWith(t, db, "", false, "submit", "--at", arg, "SELECT 3")
		assert.Equal(t, exitUsage, r.code, arg)
		assert.Contains(t, r.stderr, want+"\n", arg)
		assert.Empty(t, r.stdout, arg)
	}
	assert.Len(t, db.submitted, 2, "nothing submitted with a bad --at")
}

func TestWithoutRunAfterHint(t *testing.T) {
	old := &pgconn.PgError{Severity: "ERROR", Code: "42883",
		Message: "function lantern.async_task(unknown, job_name => unknown, timeout => interval, run_after => timestamp with time zone) does not exist",
		Hint:    "No function matches the given name and argument types. You might need to add explicit type casts."}
	err := wrapDB("", withUpdateHint(old, []string{"--at"}, []string{"run_after"}))
	assert.Equal(t, exitServer, exitCode(context.Background(), err))
	assert.Equal(t, "ERROR:  "+old.Message+" (SQLSTATE 42883)\n"+
		"HINT:  --at needs lantern_async 0.5.0 or later (lantern.async_task with run_after). "+
		"To update it, as the extension's owner: ALTER EXTENSION lantern_async UPDATE;", errorText(err))
	other := &pgconn.PgError{Severity: "ERROR", Code: "42501", Message: "permission denied"}
	assert.Same(t, other, withUpdateHint(other, []string{"--at"}, []string{"run_after"}))
}
