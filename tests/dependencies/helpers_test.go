package dependencies

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// submitAfter queues query through conn (a connection or a transaction),
// to run after the tasks deps.
func submitAfter(t *testing.T, conn testkit.QueryRower, query string, deps ...int64) int64 {
	t.Helper()
	var id int64
	require.NoError(t, conn.QueryRow(testkit.Ctx(t),
		"SELECT lantern.async_task($1, depends_on => $2::bigint[])", query, deps).Scan(&id),
		"submit %q after %v", query, deps)
	return id
}

// dependsError is the error async_task gives when it is asked to wait for
// deps through conn; nil when it queued the task.
func dependsError(t *testing.T, conn *pgx.Conn, deps any) error {
	t.Helper()
	var id int64
	return conn.QueryRow(testkit.Ctx(t), "SELECT lantern.async_task('SELECT 1', depends_on => $1)", deps).Scan(&id)
}

// startLog is a table in which a task records when it started; roles may
// write and read it.
func startLog(t *testing.T, su *pgx.Conn, roles ...string) string {
	return testkit.StartTable(t, su, roles...)
}

// logStart is a task's query that records its start (the server's clock) in tbl.
func logStart(tbl string) string {
	return fmt.Sprintf("INSERT INTO %s VALUES (clock_timestamp())", tbl)
}

// startedAt is the one start recorded in tbl.
func startedAt(t *testing.T, conn *pgx.Conn, tbl string) time.Time {
	t.Helper()
	return testkit.QueryOne[time.Time](t, conn, fmt.Sprintf("SELECT at FROM %s", tbl))
}

// endedAt is when a finished task ended, on the server's clock.
func endedAt(t *testing.T, conn *pgx.Conn, jobid int64) time.Time {
	t.Helper()
	return testkit.QueryOne[time.Time](t, conn,
		"SELECT started_at + duration FROM lantern.tasks WHERE jobid = $1", jobid)
}

// waitWaiting waits until a claim has found each of ids waiting for its
// dependencies: pending, and out of the claims' queue.
func waitWaiting(t *testing.T, su *pgx.Conn, ids ...int64) {
	t.Helper()
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("%d tasks waiting for their dependencies", len(ids)),
		testkit.WhileConnected(su, func() (bool, string) {
			n, err := testkit.QueryRows[int64](su, `
				SELECT count(*) FROM lantern.tasks t JOIN lantern.task_owners o USING (jobid)
				WHERE t.jobid = ANY ($1) AND t.status = 'pending' AND o.due IS NULL AND o.depends`, ids)
			if err != nil {
				return false, err.Error()
			}
			return n[0] == int64(len(ids)), fmt.Sprintf("%d of %d waiting", n[0], len(ids))
		}))
}

// dependsOnMessage is the start of the error of a task whose dependency
// ended as how says ("failed", "was canceled", "no longer exists").
func dependsOnMessage(jobid int64, how string) string {
	return fmt.Sprintf("ERROR:  task %d, which this task depends on, %s\n", jobid, how)
}
