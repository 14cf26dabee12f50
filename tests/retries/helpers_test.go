package retries

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// attempt is a row of lantern.task_attempts.
type attempt struct {
	Number   int
	Started  time.Time
	Duration time.Duration
	SQLState *string
	Error    *string
}

func (a attempt) ended() time.Time { return a.Started.Add(a.Duration) }

// attempts reads a task's attempts through conn, in order.
func attempts(t *testing.T, conn *pgx.Conn, jobid int64) []attempt {
	t.Helper()
	rows, err := conn.Query(testkit.Ctx(t), `
		SELECT attempt, started_at, extract(epoch FROM duration)::float8, sqlstate, error_message
		FROM lantern.task_attempts WHERE jobid = $1 ORDER BY attempt`, jobid)
	require.NoError(t, err)
	var out []attempt
	for rows.Next() {
		var a attempt
		var secs float64
		require.NoError(t, rows.Scan(&a.Number, &a.Started, &secs, &a.SQLState, &a.Error))
		a.Duration = time.Duration(secs * float64(time.Second))
		out = append(out, a)
	}
	require.NoError(t, rows.Err())
	return out
}

// submitRetries queues query with async_task(query, retries => n).
func submitRetries(t *testing.T, conn *pgx.Conn, query string, n int, more ...string) int64 {
	t.Helper()
	var id int64
	extra := ""
	for _, m := range more {
		extra += ", " + m
	}
	require.NoError(t, conn.QueryRow(testkit.Ctx(t),
		fmt.Sprintf("SELECT lantern.async_task($1, retries => $2%s)", extra), query, n).Scan(&id),
		"async_task(%q, retries => %d%s)", query, n, extra)
	return id
}

// failingUntil is a query that fails with sqlstate until the sequence seq
// (made by newSequence) has been advanced n times, then succeeds. A
// sequence, because its value survives the failed attempt's rollback.
func failingUntil(seq string, n int, sqlstate string) string {
	return fmt.Sprintf(`DO $$ BEGIN IF nextval('%s') <= %d THEN RAISE EXCEPTION 'transient failure %%', currval('%s') USING ERRCODE = '%s'; END IF; END $$`,
		seq, n, seq, sqlstate)
}

// alwaysFailing fails every time with sqlstate.
func alwaysFailing(sqlstate string) string {
	return fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION 'transient failure' USING ERRCODE = '%s'; END $$`, sqlstate)
}

// newSequence creates a sequence the role may use.
func newSequence(t *testing.T, su *pgx.Conn, role string) string {
	t.Helper()
	name := testkit.Ident(t, testkit.Uniq("seq"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE SEQUENCE %s; GRANT USAGE, SELECT, UPDATE ON SEQUENCE %[1]s TO %s", name, role))
	return name
}

// status reads a task's status through conn.
func status(t *testing.T, conn *pgx.Conn, jobid int64) string {
	t.Helper()
	return testkit.Deref(testkit.GetTask(t, conn, jobid).Status)
}

// Backoff bounds: the wait before the attempt after attempt n is
// 2^(n-1) s, drawn from ±25 % around it (bgworker.Backoff).
func minBackoff(n int) time.Duration { return time.Duration(float64(time.Second<<(n-1)) * 0.75) }
func maxBackoff(n int) time.Duration { return time.Duration(float64(time.Second<<(n-1)) * 1.25) }

// lateStart bounds how long after its due time an attempt starts: a
// worker of the role, idle or forked for it (see tests/delayed).
const lateStart = 2 * time.Second

// requireBackoffs checks the gaps between consecutive attempts: each at
// least its backoff, and at most the backoff plus a late start.
func requireBackoffs(t *testing.T, as []attempt) {
	t.Helper()
	for i := 1; i < len(as); i++ {
		gap := as[i].Started.Sub(as[i-1].ended())
		t.Logf("attempt %d started %v after attempt %d ended", as[i].Number, gap.Round(time.Millisecond), as[i-1].Number)
		require.GreaterOrEqual(t, gap, minBackoff(as[i-1].Number), "the backoff before attempt %d", as[i].Number)
		require.Less(t, gap, maxBackoff(as[i-1].Number)+lateStart, "the backoff before attempt %d", as[i].Number)
	}
}
