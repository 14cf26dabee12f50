package api

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestSubmitReturnsJobIDAtOnce(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	before := testkit.QueryOne[time.Time](t, su, "SELECT now()")

	// A submit that ran the query would take its 6 s.
	const q = "SELECT pg_sleep(6)"
	start := time.Now()
	id := testkit.Submit(t, su, q)
	elapsed := time.Since(start)
	require.Less(t, elapsed, 3*time.Second, "async_task must not wait for the query")
	require.Positive(t, id)

	r := testkit.GetTask(t, su, id)
	require.Equal(t, id, r.JobID)
	require.Equal(t, q, r.Query)
	require.Equal(t, testkit.Superuser, r.Username)
	require.Contains(t, []string{"pending", "running"}, testkit.Deref(r.Status))
	require.Nil(t, r.Duration, "duration is only set at the end")
	require.Nil(t, r.ErrorMessage, "error_message is only set at the end")
	require.False(t, r.StartedAt.Before(before), "started_at %v before submit time %v", r.StartedAt, before)

	testkit.RequireSucceeded(t, su, id)

	// A later submission gets a larger jobid.
	id2 := testkit.Submit(t, su, "SELECT 1")
	require.Greater(t, id2, id)
	testkit.RequireSucceeded(t, su, id2)
}

func TestPendingInsideSubmittingTransaction(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tx, err := su.Begin(testkit.Ctx(t))
	require.NoError(t, err)
	id := testkit.Submit(t, tx, "SELECT 1")
	var status *string
	var dur, em *string
	require.NoError(t, tx.QueryRow(testkit.Ctx(t),
		"SELECT status, duration::text, error_message FROM lantern.tasks WHERE jobid = $1", id).Scan(&status, &dur, &em))
	require.Equal(t, "pending", testkit.Deref(status))
	require.Nil(t, dur)
	require.Nil(t, em)
	require.NoError(t, tx.Commit(testkit.Ctx(t)))
	testkit.RequireSucceeded(t, su, id)
}

// observeTask submits query through conn and polls the task until it is
// final, recording every distinct status in order and checking that
// duration and error_message stay NULL until then. It returns the jobid,
// the observed statuses and when (since the submit) the final status was
// first seen.
func observeTask(t *testing.T, conn *pgx.Conn, query string) (id int64, seen []string, finalAt time.Duration) {
	t.Helper()
	submitted := time.Now()
	id = testkit.Submit(t, conn, query)
	var early []string // duration/error_message set before the end
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("task %d to finish", id), testkit.WhileConnected(conn, func() (bool, string) {
		var st *string
		var hasDur, hasErr bool
		err := conn.QueryRow(context.Background(),
			"SELECT status, duration IS NOT NULL, error_message IS NOT NULL FROM lantern.tasks WHERE jobid = $1",
			id).Scan(&st, &hasDur, &hasErr)
		if err != nil {
			return false, err.Error()
		}
		s := testkit.Deref(st)
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		final := s == "succeeded" || s == "failed"
		if !final && (hasDur || hasErr) {
			early = append(early, fmt.Sprintf("status=%q duration set=%v error_message set=%v", s, hasDur, hasErr))
		}
		if final {
			finalAt = time.Since(submitted)
		}
		return final, fmt.Sprintf("statuses so far %v", seen)
	}))
	require.Empty(t, early, "duration/error_message must be written only with the final status")
	return id, seen, finalAt
}

// isSubsequence reports whether seen is an ordered subsequence of of.
func isSubsequence(seen, of []string) bool {
	i := 0
	for _, s := range seen {
		for i < len(of) && of[i] != s {
			i++
		}
		if i == len(of) {
			return false
		}
		i++
	}
	return true
}

func TestStatusLifecycle(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	id, seen, _ := observeTask(t, su, "SELECT pg_sleep(2)")
	require.True(t, isSubsequence(seen, []string{"pending", "running", "succeeded"}),
		"observed statuses %v", seen)
	require.Contains(t, seen, "running", "a 2 s task must be observed as 'running'")

	r := testkit.GetTask(t, su, id)
	require.Equal(t, "succeeded", testkit.Deref(r.Status))
	require.Nil(t, r.ErrorMessage)
	require.NotNil(t, r.Duration)
	require.GreaterOrEqual(t, *r.Duration, 1.9, "duration of a pg_sleep(2) task")
	require.Less(t, *r.Duration, testkit.WaitTimeout.Seconds())
	require.Empty(t, testkit.TaskSQLState(t, id), "no lantern.task_errors row for a succeeded task")
}

func TestNoIntermediateSucceeded(t *testing.T) {
	t.Run("all statements succeed", func(t *testing.T) {
		testkit.Begin(t)
		su := testkit.Connect(t, testkit.Superuser)
		id, seen, finalAt := observeTask(t, su, "SELECT pg_sleep(1); SELECT pg_sleep(1); SELECT pg_sleep(1)")
		require.Equal(t, "succeeded", seen[len(seen)-1], "observed %v", seen)
		require.True(t, isSubsequence(seen, []string{"pending", "running", "succeeded"}), "observed %v", seen)
		require.GreaterOrEqual(t, finalAt, 3*time.Second,
			"final status seen %s after submit, before the whole string could have run", finalAt)
		r := testkit.GetTask(t, su, id)
		require.GreaterOrEqual(t, testkit.Deref(r.Duration), 2.9)
	})
	t.Run("last statement fails", func(t *testing.T) {
		testkit.Begin(t)
		su := testkit.Connect(t, testkit.Superuser)
		id, seen, finalAt := observeTask(t, su, "SELECT pg_sleep(1); SELECT pg_sleep(1); SELECT 1/0")
		require.NotContains(t, seen, "succeeded", "observed %v", seen)
		require.Equal(t, "failed", seen[len(seen)-1], "observed %v", seen)
		require.GreaterOrEqual(t, finalAt, 2*time.Second)
		r := testkit.GetTask(t, su, id)
		require.Equal(t, "ERROR:  division by zero", testkit.Deref(r.ErrorMessage))
		require.NotNil(t, r.Duration)
	})
}

func TestSucceededTask(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	tbl := testkit.Ident(t, testkit.Uniq("ok"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int); INSERT INTO %[1]s SELECT generate_series(1, 1000)", tbl))

	q := fmt.Sprintf("CREATE INDEX %s_a_idx ON %[1]s (a)", tbl)
	name := "build index on " + tbl
	id := testkit.SubmitNamed(t, su, q, name)
	status, errMsg := testkit.WaitTask(t, su, id)
	require.Equal(t, "succeeded", status)
	require.Empty(t, errMsg)

	r := testkit.GetTask(t, su, id)
	require.Equal(t, q, r.Query)
	require.Equal(t, name, testkit.Deref(r.JobName))
	require.Equal(t, testkit.Superuser, r.Username)
	require.Nil(t, r.ErrorMessage, "error_message IS NULL on success")
	require.NotNil(t, r.Duration, "duration IS NOT NULL on success")
	require.GreaterOrEqual(t, *r.Duration, 0.0)
	require.Empty(t, testkit.TaskSQLState(t, id))

	require.True(t, testkit.QueryOne[bool](t, su, "SELECT to_regclass($1) IS NOT NULL", tbl+"_a_idx"), "index was built")
}

func TestJobNameStored(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	names := []string{"nightly reindex", "it's \"quoted\" — ünïcödé"}
	var ids []int64
	for _, n := range names {
		ids = append(ids, testkit.SubmitNamed(t, su, "SELECT 1", n))
	}
	for i, id := range ids {
		testkit.RequireSucceeded(t, su, id)
		r := testkit.GetTask(t, su, id)
		require.NotNil(t, r.JobName, "job_name of task %d", id)
		require.Equal(t, names[i], *r.JobName)
	}
}

func TestFailedTaskErrorMessage(t *testing.T) {
	uTbl := testkit.Uniq("dup")
	cases := []struct {
		name, query, want, sqlstate string
	}{
		{
			name:     "undefined column",
			query:    "SELECT pg_sleep(haha);",
			want:     "ERROR:  column \"haha\" does not exist\nLINE 1: SELECT pg_sleep(haha);\n                        ^",
			sqlstate: "42703",
		},
		{
			name:     "syntax error",
			query:    "SELEC 1",
			want:     "ERROR:  syntax error at or near \"SELEC\"\nLINE 1: SELEC 1\n        ^",
			sqlstate: "42601",
		},
		{
			name:  "hint",
			query: "SELECT lantern_test_no_such_fn(1)",
			want: "ERROR:  function lantern_test_no_such_fn(integer) does not exist\n" +
				"LINE 1: SELECT lantern_test_no_such_fn(1)\n" +
				"               ^\n" +
				"HINT:  No function matches the given name and argument types. You might need to add explicit type casts.",
			sqlstate: "42883",
		},
		{
			name:  "detail",
			query: fmt.Sprintf("CREATE TABLE %s(a int PRIMARY KEY); INSERT INTO %[1]s VALUES (1), (1)", uTbl),
			want: fmt.Sprintf("ERROR:  duplicate key value violates unique constraint \"%s_pkey\"\n"+
				"DETAIL:  Key (a)=(1) already exists.", uTbl),
			sqlstate: "23505",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			id := testkit.Submit(t, su, tc.query)
			require.Equal(t, tc.want, testkit.RequireFailedWithSQLState(t, su, id, tc.sqlstate))
			r := testkit.GetTask(t, su, id)
			require.NotNil(t, r.Duration, "duration is set on failure too")
			require.Equal(t, tc.query, r.Query)
		})
	}
}

// TestStatusesAreKnown checks no row ever carries a status outside the
// documented set (run after the other lifecycle tests have produced rows).
func TestStatusesAreKnown(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	for _, s := range testkit.QueryAll[string](t, su, "SELECT DISTINCT coalesce(status, '<NULL>') FROM lantern.tasks") {
		require.True(t, slices.Contains([]string{"pending", "running", "succeeded", "failed", "canceled"}, s),
			"unexpected status %q", s)
	}
}
