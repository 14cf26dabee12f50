package main

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSubmitRetriesAndAfter(t *testing.T) {
	db := &fakeStore{}
	r := runWith(t, db, "", false, "submit", "--retries", "3", "--after", "5", "--after", " 7,5", "SELECT 1")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, []submission{{Query: "SELECT 1", Retries: 3, After: []int64{5, 7}}}, db.submitted,
		"repeated and comma-separated, the first of repeats kept")

	r = runWith(t, db, "", false, "submit", "--retries", "100", "--retries", "0", "SELECT 2")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, submission{Query: "SELECT 2"}, db.submitted[1], "0, the last given: no retries")

	// Bad values: a usage error, and nothing submitted.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retries", "101"}, "lantern-async: --retries must be between 0 and 100, not 101 (the attempts that may follow a transient failure)"},
		{[]string{"--retries", "-1"}, "lantern-async: --retries must be between 0 and 100, not -1"},
		{[]string{"--retries", "two"}, `lantern-async: invalid argument "two" for "--retries" flag`},
		{[]string{"--after", "0"}, `lantern-async: --after "0" is not a jobid: give the jobid of a task, a positive integer`},
		{[]string{"--after", "-4"}, `lantern-async: --after "-4" is not a jobid`},
		{[]string{"--after", "12,x"}, `lantern-async: --after "x" is not a jobid`},
		{[]string{"--after", "12,,13"}, `lantern-async: --after "" is not a jobid`},
		{[]string{"--after", "99999999999999999999"}, `lantern-async: --after "99999999999999999999" is not a jobid`},
	} {
		r = runWith(t, db, "", false, append(append([]string{"submit"}, tc.args...), "SELECT 3")...)
		assert.Equal(t, exitUsage, r.code, "%v", tc.args)
		assert.Contains(t, r.stderr, tc.want, "%v", tc.args)
		assert.Empty(t, r.stdout, "%v", tc.args)
	}
	assert.Len(t, db.submitted, 2, "nothing submitted with a bad --retries or --after")
}

func TestNamedCall(t *testing.T) {
	flags, _ := newerArguments(submission{Query: "q", Name: "n", Timeout: "1 hour"})
	assert.Empty(t, flags, "positional, as every version takes it")

	sub := submission{Query: "q", Retries: 2}
	sql, args := namedCall(sub, nil)
	assert.Equal(t, "SELECT lantern.async_task($1, job_name => $2, timeout => $3::pg_catalog.interval, "+
		"retries => $4::pg_catalog.int4)", sql)
	assert.Equal(t, []any{"q", (*string)(nil), (*string)(nil), int32(2)}, args)

	name := "n"
	sub = submission{Query: "q", Timeout: "5 minutes", AtIn: "90000000 microseconds", Retries: 1, After: []int64{4, 2}}
	sql, args = namedCall(sub, &name)
	assert.Equal(t, "SELECT lantern.async_task($1, job_name => $2, timeout => $3::pg_catalog.interval, "+
		"run_after => pg_catalog.clock_timestamp() + $4::pg_catalog.interval, retries => $5::pg_catalog.int4, "+
		"depends_on => $6::pg_catalog.int8[])", sql)
	assert.Equal(t, []any{"q", &name, ptr("5 minutes"), "90000000 microseconds", int32(1), []int64{4, 2}}, args)

	sql, args = namedCall(submission{Query: "q", At: "tomorrow", After: []int64{9}}, nil)
	assert.Equal(t, "SELECT lantern.async_task($1, job_name => $2, timeout => $3::pg_catalog.interval, "+
		"run_after => $4::pg_catalog.timestamptz, depends_on => $5::pg_catalog.int8[])", sql)
	assert.Equal(t, []any{"q", (*string)(nil), (*string)(nil), "tomorrow", []int64{9}}, args)
}

func TestWithUpdateHintNamesTheFlags(t *testing.T) {
	old := &pgconn.PgError{Severity: "ERROR", Code: "42883", Message: "function lantern.async_task(unknown, retries => integer) does not exist"}
	flags, params := newerArguments(submission{Retries: 1, After: []int64{3}})
	err := wrapDB("", withUpdateHint(old, flags, params))
	assert.Equal(t, exitServer, exitCode(context.Background(), err))
	assert.Equal(t, "ERROR:  "+old.Message+" (SQLSTATE 42883)\n"+
		"HINT:  --retries and --after need lantern_async 0.5.0 or later (lantern.async_task with retries and depends_on). "+
		"To update it, as the extension's owner: ALTER EXTENSION lantern_async UPDATE;", errorText(err))

	flags, params = newerArguments(submission{AtIn: "1 microseconds", Retries: 1, After: []int64{3}})
	assert.Equal(t, []string{"--at", "--retries", "--after"}, flags)
	assert.Equal(t, "run_after, retries and depends_on", joinAnd(params))

	// A server of 0.5.0: its own errors are left as they are.
	unsupported := &pgconn.PgError{Severity: "ERROR", Code: "0A000", Message: "depends_on is not supported yet"}
	assert.Same(t, unsupported, withUpdateHint(unsupported, flags, params))
}
