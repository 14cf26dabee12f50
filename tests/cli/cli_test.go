package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The lantern-async command (cmd/lantern-async) against the server: each
// test builds it and runs it as a process with --dsn.

// cliTask is a row as `list --output json` and `show --output json` print it.
type cliTask struct {
	JobID           int64      `json:"jobid"`
	Query           string     `json:"query"`
	JobName         *string    `json:"job_name"`
	Username        string     `json:"username"`
	Status          *string    `json:"status"`
	DurationSeconds *float64   `json:"duration_seconds"`
	ErrorMessage    *string    `json:"error_message"`
	SQLState        *string    `json:"sqlstate"`
	StartedAt       time.Time  `json:"started_at"`
	Due             *time.Time `json:"due"`
}

func TestCLISubmitWaitSucceeds(t *testing.T) {
	testkit.Begin(t)
	role := testkit.NewTempRole(t, testkit.Connect(t, testkit.Superuser), "cli_ok")
	c := testkit.NewCLI(t, role)

	r := c.Run("submit", "--wait", "--name", "tiny", "SELECT pg_sleep(0.1)")
	require.Equal(t, 0, r.Code, "%s", r)
	id := testkit.CLIJobID(t, r)
	require.Regexp(t, fmt.Sprintf(`(?m)^task %d succeeded in [0-9.]+m?s$`, id), r.Stdout)
	require.Equal(t, "succeeded", testkit.Deref(testkit.GetTask(t, nil, id).Status))
	require.Equal(t, "tiny", testkit.Deref(testkit.GetTask(t, nil, id).JobName))
	require.Empty(t, r.Stderr)

	// Waiting again for a finished task returns at once, with the same outcome.
	r = c.Run("wait", strconv.FormatInt(id, 10))
	require.Equal(t, 0, r.Code, "%s", r)
	require.Regexp(t, fmt.Sprintf(`^task %d succeeded in `, id), r.Stdout)

	// SQL on standard input.
	ctxRun := c.Command(t.Context(), "submit", "--wait")
	ctxRun.Stdin = strings.NewReader("SELECT 1;\nSELECT 2")
	out, err := ctxRun.Output()
	require.NoError(t, err, "%s", out)
	id2, err := strconv.ParseInt(strings.SplitN(string(out), "\n", 2)[0], 10, 64)
	require.NoError(t, err, "%s", out)
	require.Equal(t, "SELECT 1;\nSELECT 2", testkit.GetTask(t, nil, id2).Query)
}

func TestCLIFailingTask(t *testing.T) {
	testkit.Begin(t)
	role := testkit.NewTempRole(t, testkit.Connect(t, testkit.Superuser), "cli_fail")
	c := testkit.NewCLI(t, role)

	r := c.Run("submit", "--wait", "SELECT 1/0")
	require.Equal(t, 1, r.Code, "a failed task: exit status 1\n%s", r)
	id := testkit.CLIJobID(t, r)
	require.Contains(t, r.Stdout, fmt.Sprintf("task %d failed: ERROR:  division by zero (SQLSTATE 22012)", id))

	r = c.Run("show", strconv.FormatInt(id, 10))
	require.Equal(t, 0, r.Code, "%s", r)
	require.Regexp(t, `(?m)^status\s+\| failed$`, r.Stdout)
	require.Regexp(t, `(?m)^sqlstate\s+\| 22012$`, r.Stdout)
	require.Contains(t, r.Stdout, "\n\nERROR:  division by zero\n", "error_message as psql prints it")

	// A task the role cannot see, and a usage error.
	other := testkit.NewTempRole(t, testkit.Connect(t, testkit.Superuser), "cli_other")
	r = c.As(other).Run("wait", strconv.FormatInt(id, 10))
	require.Equal(t, 1, r.Code, "%s", r)
	require.Contains(t, r.Stdout, fmt.Sprintf("task %d not found", id))
	r = c.Run("wait", "nope")
	require.Equal(t, 2, r.Code, "%s", r)
}

// submit --timeout gives the task its own limit: it is stopped and fails,
// and says so.
func TestCLISubmitWithTimeout(t *testing.T) {
	testkit.Begin(t)
	role := testkit.NewTempRole(t, testkit.Connect(t, testkit.Superuser), "cli_timeout")
	c := testkit.NewCLI(t, role)

	r := c.Run("submit", "--wait", "--timeout", "500ms", "SELECT pg_sleep(60)")
	require.Equal(t, 1, r.Code, "a task stopped by its timeout: exit status 1\n%s", r)
	id := testkit.CLIJobID(t, r)
	require.Contains(t, r.Stdout, fmt.Sprintf("task %d failed: ERROR:  canceling task due to task timeout (SQLSTATE 57014)", id))
	require.Equal(t, 2, c.Run("submit", "--timeout", "0s", "SELECT 1").Code, "a zero timeout is a usage error")
}

func TestCLIServerErrorShowsSQLState(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	owner := testkit.NewTempRole(t, su, "cli_owner")
	intruder := testkit.NewTempRole(t, su, "cli_intruder")
	c := testkit.NewCLI(t, owner)

	r := c.Run("submit", "SELECT pg_sleep(300)")
	require.Equal(t, 0, r.Code, "%s", r)
	id := testkit.CLIJobID(t, r)
	sid := strconv.FormatInt(id, 10)

	r = c.As(intruder).Run("cancel", sid)
	require.Equal(t, 3, r.Code, "%s", r)
	require.Contains(t, r.Stderr, fmt.Sprintf("lantern-async: ERROR:  permission denied to cancel task %d (SQLSTATE 42501)", id))

	r = c.Run("cancel", sid)
	require.Equal(t, 0, r.Code, "%s", r)
	require.Equal(t, fmt.Sprintf("task %d canceled\n", id), r.Stdout)
	testkit.RequireCanceled(t, testkit.Connect(t, owner), id, "57014")

	r = c.Run("cancel", sid)
	require.Equal(t, 1, r.Code, "%s", r)
	require.Contains(t, r.Stdout, fmt.Sprintf("task %d not canceled: it has already finished (canceled)", id))

	r = c.Run("wait", sid)
	require.Equal(t, 1, r.Code, "%s", r)
	require.Regexp(t, fmt.Sprintf(`^task %d canceled after `, id), r.Stdout)

	// A connection the server refuses.
	r = c.As("no_such_role_cli").Run("list")
	require.Equal(t, 3, r.Code, "%s", r)
	require.Contains(t, r.Stderr, `role "no_such_role_cli" does not exist (SQLSTATE 28000)`)
}

func TestCLIListAndShowJSON(t *testing.T) {
	testkit.Begin(t)
	role := testkit.NewTempRole(t, testkit.Connect(t, testkit.Superuser), "cli_list")
	c := testkit.NewCLI(t, role)

	r := c.Run("submit", "--name", "quick one", "SELECT 1")
	require.Equal(t, 0, r.Code, "%s", r)
	quick := testkit.CLIJobID(t, r)
	r = c.Run("submit", "--name", "slow one", "SELECT pg_sleep(300)")
	require.Equal(t, 0, r.Code, "%s", r)
	slow := testkit.CLIJobID(t, r)
	testkit.RequireSucceeded(t, testkit.Connect(t, role), quick)

	list := func(args ...string) []cliTask {
		t.Helper()
		r := c.Run(append([]string{"list", "--output", "json"}, args...)...)
		require.Equal(t, 0, r.Code, "%s", r)
		var tasks []cliTask
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &tasks), r.Stdout)
		return tasks
	}
	ids := func(tasks []cliTask) []int64 {
		var out []int64
		for _, x := range tasks {
			out = append(out, x.JobID)
		}
		return out
	}
	require.Equal(t, []int64{slow}, ids(list()), "by default the unfinished tasks")
	require.Equal(t, []int64{quick, slow}, ids(list("--all")))
	done := list("--status", "succeeded")
	require.Equal(t, []int64{quick}, ids(done))
	require.Equal(t, "quick one", testkit.Deref(done[0].JobName))
	require.Equal(t, role, done[0].Username)
	require.NotNil(t, done[0].DurationSeconds)

	r = c.Run("list", "--all")
	require.Equal(t, 0, r.Code, "%s", r)
	require.Regexp(t, `^\s+jobid\s+\|\s+status\s+\|\s+job_name\s+\|\s+started_at\s+\|\s+duration\s+\|\s+query\n-+\+`, r.Stdout)
	require.Regexp(t, fmt.Sprintf(`(?m)^ +%d \| succeeded +\| quick one +\| .* \| SELECT 1$`, quick), r.Stdout)
	require.Contains(t, r.Stdout, "(2 rows)")

	r = c.Run("show", strconv.FormatInt(slow, 10), "--output", "json")
	require.Equal(t, 0, r.Code, "%s", r)
	var shown cliTask
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &shown), r.Stdout)
	require.Equal(t, slow, shown.JobID)
	require.Equal(t, "SELECT pg_sleep(300)", shown.Query)
	require.Contains(t, []string{"pending", "running"}, testkit.Deref(shown.Status))
	require.Nil(t, shown.ErrorMessage)

	r = c.Run("cancel", strconv.FormatInt(slow, 10))
	require.Equal(t, 0, r.Code, "%s", r)
}

func TestCLIWaitPlainOutput(t *testing.T) {
	testkit.Begin(t)
	role := testkit.NewTempRole(t, testkit.Connect(t, testkit.Superuser), "cli_plain")
	conn := testkit.Connect(t, role)
	c := testkit.NewCLI(t, role)

	ok := testkit.Submit(t, conn, "SELECT pg_sleep(1)")
	bad := testkit.Submit(t, conn, "SELECT pg_sleep(0.5); SELECT no_such_column")
	r := c.Run("wait", strconv.FormatInt(ok, 10), strconv.FormatInt(bad, 10))
	require.Equal(t, 1, r.Code, "%s", r)
	require.NotContains(t, r.Stdout, "\r", "no progress bar on a pipe")
	require.Regexp(t, fmt.Sprintf(`(?m)^task %d running$`, ok), r.Stdout, "a line when the task starts")
	require.Regexp(t, fmt.Sprintf(`(?m)^task %d succeeded in [0-9.]+s$`, ok), r.Stdout)
	require.Regexp(t, fmt.Sprintf(`(?m)^task %d failed: ERROR:  column "no_such_column" does not exist \(SQLSTATE 42703\)$`, bad), r.Stdout)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	require.LessOrEqual(t, len(lines), 8, "one line per change, not per poll:\n%s", r.Stdout)
}

func TestCLIProgressOnTerminal(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	role := testkit.NewCreatorRole(t, su, "cli_progress")
	testkit.DropRolesAtEnd(t, role)
	table := testkit.Ident(t, testkit.Uniq("cli_md5"))
	conn := testkit.Connect(t, role)
	testkit.MustExec(t, conn, fmt.Sprintf("CREATE TABLE %s AS SELECT md5(i::text) AS v FROM generate_series(1, 2000000) i", table))
	c := testkit.NewCLI(t, role)

	// About 2.5 s here: an external sort in 1 MB, md5() once more per row.
	p, _ := c.StartPty("submit", "--wait", fmt.Sprintf(
		"SET maintenance_work_mem = '1MB'; SET max_parallel_maintenance_workers = 0; CREATE INDEX ON %s (md5(v))", table))
	r := p.End()
	require.Equal(t, 0, r.Code, "%s", r)
	out := r.Stdout
	require.Contains(t, out, "building index", "the phase, from lantern.task_progress:\n%q", out)
	require.Regexp(t, `[0-9]+% \|`, out, "a percent and its bar:\n%q", out)
	require.Regexp(t, `\r`, out, "the bar redraws its line")
	id := testkit.CLIJobID(t, r)
	require.Regexp(t, fmt.Sprintf(`task %d succeeded in [0-9.]+s\r?\n$`, id), out)
	testkit.RequireSucceeded(t, conn, id)
}

func TestCLICtrlCStopsWaitingOnly(t *testing.T) {
	testkit.Begin(t)
	role := testkit.NewTempRole(t, testkit.Connect(t, testkit.Superuser), "cli_sigint")
	conn := testkit.Connect(t, role)
	c := testkit.NewCLI(t, role)
	id := testkit.Submit(t, conn, "SELECT pg_sleep(300)")
	sid := strconv.FormatInt(id, 10)
	hint := fmt.Sprintf("stopped waiting; task %d keeps running. To cancel it: lantern-async cancel %d", id, id)

	// SIGINT to a wait whose output is a pipe.
	p := c.Start("wait", sid)
	p.WaitOutput(fmt.Sprintf("task %d running\n", id))
	require.NoError(t, p.Cmd.Process.Signal(os.Interrupt))
	r := p.End()
	require.Equal(t, 130, r.Code, "%s", r)
	require.Contains(t, r.Stderr, hint)
	require.Equal(t, "running", testkit.Deref(testkit.GetTask(t, nil, id).Status), "the task keeps running")

	// Ctrl-C on a terminal, while the bar is shown.
	p, write := c.StartPty("wait", sid)
	p.WaitOutput(fmt.Sprintf("task %d running", id))
	write("\x03")
	r = p.End()
	require.Equal(t, 130, r.Code, "%s", r)
	require.Contains(t, r.Stdout, hint)
	require.Equal(t, "running", testkit.Deref(testkit.GetTask(t, nil, id).Status), "the task keeps running")

	r = c.Run("cancel", sid)
	require.Equal(t, 0, r.Code, "%s", r)
	testkit.RequireCanceled(t, conn, id, "57014")
	assert.Regexp(t, regexp.MustCompile(`^task \d+ canceled\n$`), r.Stdout)
}

// submit --at +2s: the task is pending, list and show say when it is due,
// and it then succeeds; a bad --at is refused with nothing queued.
func TestCLISubmitAt(t *testing.T) {
	testkit.Begin(t)
	role := testkit.NewTempRole(t, testkit.Connect(t, testkit.Superuser), "cli_at")
	c := testkit.NewCLI(t, role)

	submitted := time.Now()
	r := c.Run("submit", "--at", "+2s", "--name", "later", "SELECT 1")
	require.Equal(t, 0, r.Code, "%s", r)
	id := testkit.CLIJobID(t, r)
	sid := strconv.FormatInt(id, 10)

	r = c.Run("list", "--output", "json")
	listed := time.Since(submitted)
	require.Equal(t, 0, r.Code, "%s", r)
	var tasks []cliTask
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &tasks), r.Stdout)
	table := c.Run("list")
	shown := c.Run("show", sid)
	readBy := time.Since(submitted)
	// The due time is run_after, the server's clock at the submit + 2 s;
	// started_at is the submit's transaction start, a little before.
	require.Len(t, tasks, 1, "%s", r.Stdout)
	require.Equal(t, id, tasks[0].JobID)
	if listed < 1500*time.Millisecond { // still before its time
		require.Equal(t, "pending", testkit.Deref(tasks[0].Status))
		require.NotNil(t, tasks[0].Due, "a pending task has its due:\n%s", r.Stdout)
		wait := tasks[0].Due.Sub(tasks[0].StartedAt)
		require.GreaterOrEqual(t, wait, 2*time.Second, "due − submit")
		require.Less(t, wait, 3*time.Second, "due − submit")
	} else {
		t.Logf("list ran %v after the submit: the due checks skipped", listed)
	}
	if readBy < 1500*time.Millisecond {
		require.Regexp(t, fmt.Sprintf(`(?m)^ +%d \| pending \| in [0-9.]+m?s +\| later +\|`, id), table.Stdout)
		require.Regexp(t, `^\s+jobid\s+\|\s+status\s+\|\s+due\s+\|\s+job_name\s+\|`, table.Stdout)
		require.Regexp(t, `(?m)^due\s+\| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in [0-9.]+m?s\)$`, shown.Stdout)
	}

	r = c.Run("wait", sid)
	require.Equal(t, 0, r.Code, "%s", r)
	require.GreaterOrEqual(t, time.Since(submitted), 2*time.Second, "the task cannot have ended before its time")
	require.Equal(t, "succeeded", testkit.Deref(testkit.GetTask(t, nil, id).Status))
	r = c.Run("show", sid, "--output", "json")
	require.Equal(t, 0, r.Code, "%s", r)
	require.Contains(t, r.Stdout, `"due": null`, "no due once it has run")

	// Bad times: a usage error, nothing queued.
	for arg, want := range map[string]string{
		"not a time": `lantern-async: --at "not a time" is not a time: invalid input syntax for type timestamp with time zone: "not a time" (SQLSTATE 22007)`,
		"infinity":   `lantern-async: --at "infinity": a task must start at some time, not never`,
		"+5 minutes": `lantern-async: --at +5 minutes: after "+" give a Go duration, like +90s or +2h`,
	} {
		r = c.Run("submit", "--at", arg, "SELECT 2")
		require.Equal(t, 2, r.Code, "%s", r)
		require.Contains(t, r.Stderr, want, arg)
		require.Empty(t, r.Stdout, arg)
	}
	r = c.Run("list", "--all", "--output", "json")
	require.Equal(t, 0, r.Code, "%s", r)
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &tasks), r.Stdout)
	require.Len(t, tasks, 1, "only the first task was queued:\n%s", r.Stdout)

	// A time PostgreSQL reads, in the past: now.
	r = c.Run("submit", "--wait", "--at", "yesterday", "SELECT 3")
	require.Equal(t, 0, r.Code, "%s", r)
}
