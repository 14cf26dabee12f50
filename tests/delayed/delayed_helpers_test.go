package delayed

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/testkit"
	"github.com/stretchr/testify/require"
)

// A startLog is a table in which each delayed task records its jobid's tag
// and clock_timestamp() when it starts; roles may insert into and read it.
type startLog struct{ name string }

func newStartLog(t *testing.T, su *pgx.Conn, roles ...string) startLog {
	t.Helper()
	name := testkit.Ident(t, testkit.Uniq("delayed_starts"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s (tag text, at timestamptz)", name))
	for _, r := range roles {
		testkit.MustExec(t, su, fmt.Sprintf("GRANT INSERT, SELECT ON %s TO %s", name, r))
	}
	return startLog{name}
}

// delayedTask is a task submitted with run_after, and that time as the
// server computed it.
type delayedTask struct {
	ID       int64
	tag      string
	RunAfter time.Time
}

// submitIn submits, through conn, a task that records its start in l, with
// run_after = the server's clock_timestamp() + in (negative: in the past).
func submitIn(t *testing.T, conn *pgx.Conn, l startLog, in time.Duration) delayedTask {
	t.Helper()
	d := delayedTask{tag: testkit.Uniq("delayed")}
	q := fmt.Sprintf("INSERT INTO %s VALUES (%s, clock_timestamp())", l.name, testkit.Lit(d.tag))
	require.NoError(t, conn.QueryRow(testkit.Ctx(t), `
		WITH at AS (SELECT clock_timestamp() + make_interval(secs => $2) AS run_after)
		SELECT lantern.async_task($1, run_after => at.run_after), at.run_after FROM at`,
		q, in.Seconds()).Scan(&d.ID, &d.RunAfter), "submit %q to run in %v", q, in)
	return d
}

// startedAt waits (deadline waitFor) until d finished, as seen through
// conn, requires that it succeeded, and returns when it started.
func (d delayedTask) startedAt(t *testing.T, conn *pgx.Conn, l startLog, waitFor time.Duration) time.Time {
	t.Helper()
	status := ""
	testkit.RequirePoll(t, waitFor, fmt.Sprintf("task %d to finish", d.ID), testkit.WhileConnected(conn, func() (bool, string) {
		st, err := testkit.QueryRows[string](conn, "SELECT coalesce(status, '<NULL>') FROM lantern.tasks WHERE jobid = $1", d.ID)
		if err != nil || len(st) != 1 {
			return false, fmt.Sprint(st, err)
		}
		status = st[0]
		return testkit.IsFinal(status), "status " + status
	}))
	require.Equal(t, "succeeded", status, "task %d", d.ID)
	return testkit.QueryOne[time.Time](t, conn, fmt.Sprintf("SELECT at FROM %s WHERE tag = $1", l.name), d.tag)
}

// status reads d's status through conn.
func (d delayedTask) status(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	return testkit.QueryOne[string](t, conn, "SELECT coalesce(status, '<NULL>') FROM lantern.tasks WHERE jobid = $1", d.ID)
}
