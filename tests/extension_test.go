package tests

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Tests of DROP EXTENSION / CREATE EXTENSION while the background workers
// are busy. They re-create the extension, which empties lantern.tasks and
// restarts the jobids for every later test; they leave the grants as
// TestMain's setupCluster made them. Helpers of this file start with "ext".

// extGrants repeats what setupCluster grants on the extension's objects.
func extGrants(c context.Context, conn *pgx.Conn) error {
	roles := strings.Join(testRoles, ", ")
	for _, g := range []string{
		"GRANT USAGE ON SCHEMA lantern TO " + roles,
		"GRANT EXECUTE ON FUNCTION lantern.async_task(text), lantern.async_task(text, text) TO " + roles,
		"GRANT SELECT ON lantern.tasks TO " + roles,
	} {
		if _, err := conn.Exec(c, g); err != nil {
			return fmt.Errorf("%s: %w", g, err)
		}
	}
	return nil
}

// extEnsureInstalled registers a cleanup that re-creates the extension (with
// the grants) if the test left it dropped, so that later tests still work.
func extEnsureInstalled(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := cluster.Connect(c, dbName, superuser)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close(context.Background())
		var installed bool
		if err := conn.QueryRow(c,
			"SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'lantern_async')").Scan(&installed); err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		if installed {
			return
		}
		t.Logf("cleanup: re-creating the extension the test left dropped")
		if _, err := conn.Exec(c, "CREATE EXTENSION lantern_async"); err != nil {
			t.Errorf("cleanup: CREATE EXTENSION lantern_async: %v", err)
			return
		}
		if err := extGrants(c, conn); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func extDrop(t *testing.T, su *pgx.Conn) {
	t.Helper()
	start := time.Now()
	mustExec(t, su, "DROP EXTENSION lantern_async")
	t.Logf("DROP EXTENSION took %s", time.Since(start).Round(time.Millisecond))
	require.False(t, queryOne[bool](t, su, "SELECT to_regclass('lantern.tasks') IS NOT NULL"))
}

func extCreate(t *testing.T, su *pgx.Conn) {
	t.Helper()
	mustExec(t, su, "CREATE EXTENSION lantern_async")
	require.NoError(t, extGrants(ctx(t), su))
}

// extNextJobID is the jobid the next async_task will get.
func extNextJobID(t *testing.T, su *pgx.Conn) int64 {
	t.Helper()
	return queryOne[int64](t, su,
		"SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM lantern.tasks_jobid_seq")
}

// extWaitPidGone waits until no server process has pid any more.
func extWaitPidGone(t *testing.T, su *pgx.Conn, pid int32) {
	t.Helper()
	requirePoll(t, waitTimeout, fmt.Sprintf("process %d to exit", pid), func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		var qs []string
		rows, err := su.Query(context.Background(),
			"SELECT coalesce(query, '') FROM pg_stat_activity WHERE pid = $1", pid)
		if err == nil {
			qs, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			return false, err.Error()
		}
		if len(qs) == 0 {
			return true, ""
		}
		q := &qs[0]
		return false, fmt.Sprintf("still there, query %q", deref(q))
	})
}

var extErrorLineRe = regexp.MustCompile(`(?m)^.*\b(ERROR|FATAL|PANIC):.*$`)

// extLogPrefixRe matches the default log_line_prefix '%m [%p] '.
var extLogPrefixRe = regexp.MustCompile(`^\S+ \S+ \S+ \[\d+\] `)

func extErrorLines(log string) []string {
	return extErrorLineRe.FindAllString(log, -1)
}

func TestDropExtensionWhileBusy(t *testing.T) {
	begin(t)
	extEnsureInstalled(t)
	su := connect(t, superuser)
	marker := ident(t, uniq("drop_marker"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s(a int)", marker))
	mustExec(t, su, fmt.Sprintf("GRANT INSERT ON %s TO alice", marker))
	require.Equal(t, 4, cluster.MaxWorkers(), "the test fills exactly 4 worker slots")

	// Four running tasks (one per role fills every slot) and two pending.
	var running []int64
	for _, role := range []string{"alice", "bob", "carol", superuser} {
		running = append(running, submit(t, connect(t, role), "SELECT pg_sleep(5)"))
	}
	requirePoll(t, waitTimeout, "4 tasks running", func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		st, err := statusesOf(su, running)
		if err != nil {
			return false, err.Error()
		}
		return count(st, "running") == 4, fmt.Sprintf("statuses %v", st)
	})
	alice := connect(t, "alice")
	pending := []int64{
		submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (1)", marker)),
		submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (2)", marker)),
	}
	st, err := statusesOf(su, pending)
	require.NoError(t, err)
	require.Equal(t, []string{"pending", "pending"}, st)

	logBefore := len(cluster.Log())
	extDrop(t, su)
	n, err := countBackends(su, backendDispatcher)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the dispatcher right after DROP EXTENSION")

	// The running workers finish their pg_sleep(5) with nowhere to record
	// the outcome, and must exit.
	requirePoll(t, waitTimeout, "every "+backendWorker+" to exit after the drop", func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		n, err := countBackends(su, backendWorker)
		return err == nil && n == 0, fmt.Sprintf("%d workers, err=%v", n, err)
	})
	atExit := extErrorLines(cluster.Log()[logBefore:])
	// Then ~3 s (three dispatcher rounds) more with no table: nothing
	// may start repeating in the log.
	never(t, 3*time.Second, func() (bool, string) {
		lines := extErrorLines(cluster.Log()[logBefore:])
		return len(lines) > len(atExit), strings.Join(lines[len(atExit):], "\n")
	}, "new ERROR/FATAL lines in the server log while the extension is dropped")
	// No message may repeat: the same ERROR twice means a loop keeps
	// failing on the missing table.
	after := extErrorLines(cluster.Log()[logBefore:])
	seen := map[string]int{}
	for _, l := range after {
		seen[extLogPrefixRe.ReplaceAllString(l, "")]++
	}
	for msg, n := range seen {
		require.Equal(t, 1, n, "server log line repeated %d times since DROP EXTENSION: %s", n, msg)
	}
	if len(after) > 0 {
		t.Logf("observation: ERROR/FATAL lines in the server log since DROP EXTENSION (none repeats):\n%s",
			strings.Join(after, "\n"))
	}
	n, err = countBackends(su, backendDispatcher)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the dispatcher is still alive while the extension is dropped")

	extCreate(t, su)
	require.Equal(t, 0, queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks"), "the new queue is empty")
	id := submit(t, alice, fmt.Sprintf("INSERT INTO %s VALUES (3)", marker))
	requireSucceeded(t, alice, id)
	require.Equal(t, []int{3}, markerValues(t, marker), "tasks pending at the drop must never run")
	require.Equal(t, "alice", getTask(t, su, id).Username)

	// The roles' access is as TestMain left it.
	for _, role := range testRoles {
		conn := connect(t, role)
		id := submit(t, conn, "SELECT 1")
		requireSucceeded(t, conn, id)
	}
	require.Equal(t, 0, queryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE status IN ('pending', 'running')"))
}

// TestStaleOutcomeAfterRecreate: a task of the dropped table that is still
// running when the extension is re-created must not write its outcome into
// the new table's row with the same jobid.
func TestStaleOutcomeAfterRecreate(t *testing.T) {
	for _, c := range []struct{ name, oldQuery string }{
		{"succeeding old task", "SELECT pg_sleep(4) /* %s */"},
		{"failing old task", "SELECT pg_sleep(4) /* %s */; SELECT 1/0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			begin(t)
			extEnsureInstalled(t)
			su := connect(t, superuser)
			alice := connect(t, "alice")
			// Start from a fresh table, so that the colliding jobid is small.
			extDrop(t, su)
			extCreate(t, su)

			oldQ := fmt.Sprintf(c.oldQuery, uniq("stale_old"))
			old := submit(t, alice, oldQ)
			oldPid := cnlWaitActive(t, su, old, oldQ)

			extDrop(t, su)
			extCreate(t, su)
			newQ := fmt.Sprintf("SELECT pg_sleep(8) /* %s */", uniq("stale_new"))
			var id int64
			for {
				next := extNextJobID(t, su)
				require.LessOrEqual(t, next, old, "the new table's jobids went past the old task's %d", old)
				if next == old {
					id = submit(t, alice, newQ)
					break
				}
				requireSucceeded(t, alice, submit(t, alice, "SELECT 1"))
			}
			require.Equal(t, old, id, "the new task has the old task's jobid")
			newPid := cnlWaitActive(t, su, id, newQ)
			require.NotEqual(t, oldPid, newPid)

			// The old task finishes (after 4 s) and its worker goes away.
			extWaitPidGone(t, su, oldPid)
			r := getTask(t, su, id)
			require.Equal(t, "running", deref(r.Status),
				"the new task %d is still sleeping: the old task's outcome must not land on it (error_message %q)",
				id, deref(r.ErrorMessage))
			require.Nil(t, r.Duration)
			require.Nil(t, r.ErrorMessage)
			require.Empty(t, taskSQLState(t, id))

			requireSucceeded(t, alice, id)
			r = getTask(t, su, id)
			require.GreaterOrEqual(t, deref(r.Duration), 7.9, "duration of the new pg_sleep(8) task")
			require.Empty(t, taskSQLState(t, id))
		})
	}
}

// TestCancelAfterRecreateTargetsNewTask: after DROP/CREATE EXTENSION, a
// worker of the old table may still run a task whose jobid the new table
// gives to another task. cancel_task(jobid) on the new table must stop the
// new task, not the old one.
func TestCancelAfterRecreateTargetsNewTask(t *testing.T) {
	begin(t)
	extEnsureInstalled(t)
	su := connect(t, superuser)
	alice := connect(t, "alice")
	extDrop(t, su)
	extCreate(t, su)

	oldQ := fmt.Sprintf("SELECT pg_sleep(6) /* %s */", uniq("recreate_cancel_old"))
	old := submit(t, alice, oldQ)
	oldPid := cnlWaitActive(t, su, old, oldQ)

	extDrop(t, su)
	extCreate(t, su)
	require.Equal(t, old, extNextJobID(t, su), "the new table's first jobid")
	newQ := fmt.Sprintf("SELECT pg_sleep(60) /* %s */", uniq("recreate_cancel_new"))
	id := submit(t, alice, newQ)
	require.Equal(t, old, id)
	newPid := cnlWaitActive(t, su, id, newQ)

	cnlRequireCancel(t, alice, id, true)
	activeQ := "SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query = $2"
	newStopped, _ := poll(t, time.Second, func() (bool, string) {
		if l, msg := lost(su); l {
			return l, msg
		}
		var n int
		if err := su.QueryRow(context.Background(), activeQ, newPid, newQ).Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == 0, fmt.Sprintf("%d active rows", n)
	}, "the new task's worker to stop within 1 s of cancel_task")
	oldActive := queryOne[int](t, su, activeQ, oldPid, oldQ) == 1
	require.True(t, newStopped && oldActive,
		"cancel_task(%d) after re-creating the extension: new task (worker %d) stopped=%v, old table's task with the same jobid (worker %d) still running=%v",
		id, newPid, newStopped, oldPid, oldActive)
	cnlRequireCanceled(t, alice, id, "57014")
	// The old task was not the target: it runs to its end.
	extWaitPidGone(t, su, oldPid)
}
