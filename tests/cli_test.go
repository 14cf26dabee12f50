package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The lantern-async command (cmd/lantern-async) against the server: each
// test builds it and runs it as a process with --dsn.

// cliTask is a row as `list --output json` and `show --output json` print it.
type cliTask struct {
	JobID           int64    `json:"jobid"`
	Query           string   `json:"query"`
	JobName         *string  `json:"job_name"`
	Username        string   `json:"username"`
	Status          *string  `json:"status"`
	DurationSeconds *float64 `json:"duration_seconds"`
	ErrorMessage    *string  `json:"error_message"`
	SQLState        *string  `json:"sqlstate"`
}

func TestCLISubmitWaitSucceeds(t *testing.T) {
	begin(t)
	role := newTempRole(t, connect(t, superuser), "cli_ok")
	c := newCLI(t, role)

	r := c.run("submit", "--wait", "--name", "tiny", "SELECT pg_sleep(0.1)")
	require.Equal(t, 0, r.code, "%s", r)
	id := cliJobID(t, r)
	require.Regexp(t, fmt.Sprintf(`(?m)^task %d succeeded in [0-9.]+m?s$`, id), r.stdout)
	require.Equal(t, "succeeded", deref(getTask(t, nil, id).Status))
	require.Equal(t, "tiny", deref(getTask(t, nil, id).JobName))
	require.Empty(t, r.stderr)

	// Waiting again for a finished task returns at once, with the same outcome.
	r = c.run("wait", strconv.FormatInt(id, 10))
	require.Equal(t, 0, r.code, "%s", r)
	require.Regexp(t, fmt.Sprintf(`^task %d succeeded in `, id), r.stdout)

	// SQL on standard input.
	ctxRun := c.command(t.Context(), "submit", "--wait")
	ctxRun.Stdin = strings.NewReader("SELECT 1;\nSELECT 2")
	out, err := ctxRun.Output()
	require.NoError(t, err, "%s", out)
	id2, err := strconv.ParseInt(strings.SplitN(string(out), "\n", 2)[0], 10, 64)
	require.NoError(t, err, "%s", out)
	require.Equal(t, "SELECT 1;\nSELECT 2", getTask(t, nil, id2).Query)
}

func TestCLIFailingTask(t *testing.T) {
	begin(t)
	role := newTempRole(t, connect(t, superuser), "cli_fail")
	c := newCLI(t, role)

	r := c.run("submit", "--wait", "SELECT 1/0")
	require.Equal(t, 1, r.code, "a failed task: exit status 1\n%s", r)
	id := cliJobID(t, r)
	require.Contains(t, r.stdout, fmt.Sprintf("task %d failed: ERROR:  division by zero (SQLSTATE 22012)", id))

	r = c.run("show", strconv.FormatInt(id, 10))
	require.Equal(t, 0, r.code, "%s", r)
	require.Regexp(t, `(?m)^status\s+\| failed$`, r.stdout)
	require.Regexp(t, `(?m)^sqlstate\s+\| 22012$`, r.stdout)
	require.Contains(t, r.stdout, "\n\nERROR:  division by zero\n", "error_message as psql prints it")

	// A task the role cannot see, and a usage error.
	other := newTempRole(t, connect(t, superuser), "cli_other")
	r = c.as(other).run("wait", strconv.FormatInt(id, 10))
	require.Equal(t, 1, r.code, "%s", r)
	require.Contains(t, r.stdout, fmt.Sprintf("task %d not found", id))
	r = c.run("wait", "nope")
	require.Equal(t, 2, r.code, "%s", r)
}

// submit --timeout gives the task its own limit: it is stopped and fails,
// and says so.
func TestCLISubmitWithTimeout(t *testing.T) {
	begin(t)
	role := newTempRole(t, connect(t, superuser), "cli_timeout")
	c := newCLI(t, role)

	r := c.run("submit", "--wait", "--timeout", "500ms", "SELECT pg_sleep(60)")
	require.Equal(t, 1, r.code, "a task stopped by its timeout: exit status 1\n%s", r)
	id := cliJobID(t, r)
	require.Contains(t, r.stdout, fmt.Sprintf("task %d failed: ERROR:  canceling task due to task timeout (SQLSTATE 57014)", id))
	require.Equal(t, 2, c.run("submit", "--timeout", "0s", "SELECT 1").code, "a zero timeout is a usage error")
}

func TestCLIServerErrorShowsSQLState(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	owner := newTempRole(t, su, "cli_owner")
	intruder := newTempRole(t, su, "cli_intruder")
	c := newCLI(t, owner)

	r := c.run("submit", "SELECT pg_sleep(300)")
	require.Equal(t, 0, r.code, "%s", r)
	id := cliJobID(t, r)
	sid := strconv.FormatInt(id, 10)

	r = c.as(intruder).run("cancel", sid)
	require.Equal(t, 3, r.code, "%s", r)
	require.Contains(t, r.stderr, fmt.Sprintf("lantern-async: ERROR:  permission denied to cancel task %d (SQLSTATE 42501)", id))

	r = c.run("cancel", sid)
	require.Equal(t, 0, r.code, "%s", r)
	require.Equal(t, fmt.Sprintf("task %d canceled\n", id), r.stdout)
	requireCanceled(t, connect(t, owner), id, "57014")

	r = c.run("cancel", sid)
	require.Equal(t, 1, r.code, "%s", r)
	require.Contains(t, r.stdout, fmt.Sprintf("task %d not canceled: it has already finished (canceled)", id))

	r = c.run("wait", sid)
	require.Equal(t, 1, r.code, "%s", r)
	require.Regexp(t, fmt.Sprintf(`^task %d canceled after `, id), r.stdout)

	// A connection the server refuses.
	r = c.as("no_such_role_cli").run("list")
	require.Equal(t, 3, r.code, "%s", r)
	require.Contains(t, r.stderr, `role "no_such_role_cli" does not exist (SQLSTATE 28000)`)
}

func TestCLIListAndShowJSON(t *testing.T) {
	begin(t)
	role := newTempRole(t, connect(t, superuser), "cli_list")
	c := newCLI(t, role)

	r := c.run("submit", "--name", "quick one", "SELECT 1")
	require.Equal(t, 0, r.code, "%s", r)
	quick := cliJobID(t, r)
	r = c.run("submit", "--name", "slow one", "SELECT pg_sleep(300)")
	require.Equal(t, 0, r.code, "%s", r)
	slow := cliJobID(t, r)
	requireSucceeded(t, connect(t, role), quick)

	list := func(args ...string) []cliTask {
		t.Helper()
		r := c.run(append([]string{"list", "--output", "json"}, args...)...)
		require.Equal(t, 0, r.code, "%s", r)
		var tasks []cliTask
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &tasks), r.stdout)
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
	require.Equal(t, "quick one", deref(done[0].JobName))
	require.Equal(t, role, done[0].Username)
	require.NotNil(t, done[0].DurationSeconds)

	r = c.run("list", "--all")
	require.Equal(t, 0, r.code, "%s", r)
	require.Regexp(t, `^\s+jobid\s+\|\s+status\s+\|\s+job_name\s+\|\s+started_at\s+\|\s+duration\s+\|\s+query\n-+\+`, r.stdout)
	require.Regexp(t, fmt.Sprintf(`(?m)^ +%d \| succeeded +\| quick one +\| .* \| SELECT 1$`, quick), r.stdout)
	require.Contains(t, r.stdout, "(2 rows)")

	r = c.run("show", strconv.FormatInt(slow, 10), "--output", "json")
	require.Equal(t, 0, r.code, "%s", r)
	var shown cliTask
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &shown), r.stdout)
	require.Equal(t, slow, shown.JobID)
	require.Equal(t, "SELECT pg_sleep(300)", shown.Query)
	require.Contains(t, []string{"pending", "running"}, deref(shown.Status))
	require.Nil(t, shown.ErrorMessage)

	r = c.run("cancel", strconv.FormatInt(slow, 10))
	require.Equal(t, 0, r.code, "%s", r)
}

func TestCLIWaitPlainOutput(t *testing.T) {
	begin(t)
	role := newTempRole(t, connect(t, superuser), "cli_plain")
	conn := connect(t, role)
	c := newCLI(t, role)

	ok := submit(t, conn, "SELECT pg_sleep(1)")
	bad := submit(t, conn, "SELECT pg_sleep(0.5); SELECT no_such_column")
	r := c.run("wait", strconv.FormatInt(ok, 10), strconv.FormatInt(bad, 10))
	require.Equal(t, 1, r.code, "%s", r)
	require.NotContains(t, r.stdout, "\r", "no progress bar on a pipe")
	require.Regexp(t, fmt.Sprintf(`(?m)^task %d running$`, ok), r.stdout, "a line when the task starts")
	require.Regexp(t, fmt.Sprintf(`(?m)^task %d succeeded in [0-9.]+s$`, ok), r.stdout)
	require.Regexp(t, fmt.Sprintf(`(?m)^task %d failed: ERROR:  column "no_such_column" does not exist \(SQLSTATE 42703\)$`, bad), r.stdout)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.LessOrEqual(t, len(lines), 8, "one line per change, not per poll:\n%s", r.stdout)
}

func TestCLIProgressOnTerminal(t *testing.T) {
	begin(t)
	su := connect(t, superuser)
	role := newCreatorRole(t, su, "cli_progress")
	dropRolesAtEnd(t, role)
	table := ident(t, uniq("cli_md5"))
	conn := connect(t, role)
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE %s AS SELECT md5(i::text) AS v FROM generate_series(1, 2000000) i", table))
	c := newCLI(t, role)

	// About 2.5 s here: an external sort in 1 MB, md5() once more per row.
	p, _ := c.startPty("submit", "--wait", fmt.Sprintf(
		"SET maintenance_work_mem = '1MB'; SET max_parallel_maintenance_workers = 0; CREATE INDEX ON %s (md5(v))", table))
	r := p.end()
	require.Equal(t, 0, r.code, "%s", r)
	out := r.stdout
	require.Contains(t, out, "building index", "the phase, from lantern.task_progress:\n%q", out)
	require.Regexp(t, `[0-9]+% \|`, out, "a percent and its bar:\n%q", out)
	require.Regexp(t, `\r`, out, "the bar redraws its line")
	id := cliJobID(t, r)
	require.Regexp(t, fmt.Sprintf(`task %d succeeded in [0-9.]+s\r?\n$`, id), out)
	requireSucceeded(t, conn, id)
}

func TestCLICtrlCStopsWaitingOnly(t *testing.T) {
	begin(t)
	role := newTempRole(t, connect(t, superuser), "cli_sigint")
	conn := connect(t, role)
	c := newCLI(t, role)
	id := submit(t, conn, "SELECT pg_sleep(300)")
	sid := strconv.FormatInt(id, 10)
	hint := fmt.Sprintf("stopped waiting; task %d keeps running. To cancel it: lantern-async cancel %d", id, id)

	// SIGINT to a wait whose output is a pipe.
	p := c.start("wait", sid)
	p.waitOutput(fmt.Sprintf("task %d running\n", id))
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	r := p.end()
	require.Equal(t, 130, r.code, "%s", r)
	require.Contains(t, r.stderr, hint)
	require.Equal(t, "running", deref(getTask(t, nil, id).Status), "the task keeps running")

	// Ctrl-C on a terminal, while the bar is shown.
	p, write := c.startPty("wait", sid)
	p.waitOutput(fmt.Sprintf("task %d running", id))
	write("\x03")
	r = p.end()
	require.Equal(t, 130, r.code, "%s", r)
	require.Contains(t, r.stdout, hint)
	require.Equal(t, "running", deref(getTask(t, nil, id).Status), "the task keeps running")

	r = c.run("cancel", sid)
	require.Equal(t, 0, r.code, "%s", r)
	requireCanceled(t, conn, id, "57014")
	assert.Regexp(t, regexp.MustCompile(`^task \d+ canceled\n$`), r.stdout)
}
