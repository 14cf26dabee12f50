package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"nope"},
		{"list", "--bogus"},
		{"list", "extra"},
		{"list", "--output", "xml"},
		{"list", "--status", "done"},
		{"wait"},
		{"wait", "abc"},
		{"wait", "0"},
		{"cancel"},
		{"show"},
		{"show", "1", "2"},
		{"submit", "--file", "x.sql", "SELECT 1"},
		{"submit", "a", "b"},
		{"submit", "   "},
		{"submit"}, // stdin is a terminal: no SQL
		{"submit", "--timeout", "-5s", "SELECT 1"},
	} {
		r := runWith(t, &fakeStore{}, "", false, args...)
		assert.Equal(t, exitUsage, r.code, "%v: stderr %q", args, r.stderr)
		assert.Contains(t, r.stderr, "--help' for usage", "%v", args)
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range []string{"submit", "wait", "list", "show", "cancel"} {
		r := runWith(t, &fakeStore{}, "", false, c, "--help")
		assert.Equal(t, exitOK, r.code, c)
		assert.Contains(t, r.stdout, "Usage:\n  lantern-async "+c, c)
	}
}

func TestConnectionErrorExit3(t *testing.T) {
	r := runWith(t, nil, "", false, "list")
	assert.Equal(t, exitServer, r.code)
	assert.Equal(t, "lantern-async: cannot connect: FATAL:  role \"x\" does not exist (SQLSTATE 28000)\n", r.stderr)
}

func TestServerErrorShowsSQLState(t *testing.T) {
	db := &fakeStore{err: wrapDB("", &pgconn.PgError{Severity: "ERROR", Code: "42501",
		Message: "permission denied for table t", Detail: "some detail", Hint: "a hint"})}
	r := runWith(t, db, "", false, "submit", "SELECT * FROM t")
	assert.Equal(t, exitServer, r.code)
	assert.Equal(t, "lantern-async: ERROR:  permission denied for table t (SQLSTATE 42501)\n"+
		"DETAIL:  some detail\nHINT:  a hint\n", r.stderr)
	assert.True(t, db.closed)
}

func TestExitCode(t *testing.T) {
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	assert.Equal(t, exitOK, exitCode(bg, nil))
	assert.Equal(t, exitTask, exitCode(bg, statusError{code: exitTask}))
	assert.Equal(t, exitUsage, exitCode(bg, usagef("x")))
	assert.Equal(t, exitUsage, exitCode(bg, errors.New(`unknown command "x"`)))
	assert.Equal(t, exitServer, exitCode(bg, wrapDB("", errors.New("conn reset"))))
	assert.Equal(t, exitServer, exitCode(bg, &pgconn.PgError{Code: "XX000"}))
	assert.Equal(t, exitInterrupted, exitCode(canceled, wrapDB("", context.Canceled)))
	assert.Equal(t, exitInterrupted, exitCode(bg, context.Canceled))
}

func TestSubmitSQLSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "q.sql")
	require.NoError(t, os.WriteFile(file, []byte("SELECT 2"), 0o600))
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"SELECT 1"}, "SELECT 1"},
		{"", []string{"--file", file}, "SELECT 2"},
		{"SELECT 3", []string{"-"}, "SELECT 3"},
		{"SELECT 4", nil, "SELECT 4"},
		{"SELECT 5", []string{"--file", "-"}, "SELECT 5"},
	} {
		db := &fakeStore{}
		r := runWith(t, db, tc.stdin, false, append([]string{"submit"}, tc.args...)...)
		require.Equal(t, exitOK, r.code, "%v: %s", tc.args, r.stderr)
		assert.Equal(t, "7\n", r.stdout)
		require.Len(t, db.submitted, 1)
		assert.Equal(t, tc.want, db.submitted[0].Query)
	}
}

func TestSubmitNameAndTimeout(t *testing.T) {
	for _, tc := range []struct{ timeout, want string }{
		{"", ""},
		{"90s", "90000000 microseconds"},
		{"1h30m", "5400000000 microseconds"},
		{"2 hours", "2 hours"},
	} {
		db := &fakeStore{}
		args := []string{"submit", "--name", "idx", "SELECT 1"}
		if tc.timeout != "" {
			args = append(args, "--timeout", tc.timeout)
		}
		r := runWith(t, db, "", false, args...)
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Equal(t, submission{Query: "SELECT 1", Name: "idx", Timeout: tc.want}, db.submitted[0])
	}
}

func TestSubmitWait(t *testing.T) {
	db := &fakeStore{frames: []map[int64]taskState{{7: ended(7, "succeeded", 1500e6)}}}
	r := runWith(t, db, "", false, "submit", "--wait", "SELECT 1")
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "7\ntask 7 succeeded in 1.5s\n", r.stdout)

	db = &fakeStore{frames: []map[int64]taskState{{7: ended(7, "canceled", 1500e6)}}}
	r = runWith(t, db, "", false, "submit", "-w", "SELECT 1")
	assert.Equal(t, exitTask, r.code)
	assert.Equal(t, "7\ntask 7 canceled after 1.5s\n", r.stdout)
}
