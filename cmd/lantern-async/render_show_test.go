package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A task that failed twice, then succeeded, after two others.
func retriedTask() (taskRow, []dependency, []attempt) {
	r := taskRow{JobID: 9, Query: "UPDATE t SET n = n + 1", Username: "bob", StartedAt: t0,
		DurationSeconds: ptr(3.5), Status: ptr("succeeded")}
	deps := []dependency{{JobID: 7, Status: ptr("succeeded")}, {JobID: 1234, Status: nil}}
	attempts := []attempt{
		{Attempt: 1, StartedAt: t0, DurationSeconds: 0.012, SQLState: ptr("40001"),
			ErrorMessage: ptr("ERROR:  could not serialize access due to concurrent update\nCONTEXT:  SQL statement\n")},
		{Attempt: 2, StartedAt: t0.Add(time.Second), DurationSeconds: 0.5, SQLState: ptr("40P01"),
			ErrorMessage: ptr("ERROR:  deadlock detected")},
		{Attempt: 10, StartedAt: t0.Add(3 * time.Second), DurationSeconds: 0.0004},
	}
	return r, deps, attempts
}

func TestRenderShowDependenciesAndAttempts(t *testing.T) {
	r, deps, attempts := retriedTask()
	var b bytes.Buffer
	renderShow(&b, taskDetails{taskRow: r, Dependencies: deps, Attempts: attempts})
	assert.Equal(t, `-[ RECORD 1 ]----+-----------------------
jobid            | 9
job_name         |
status           | succeeded
username         | bob
started_at       | 2025-03-04 05:06:07
duration         | 3.5s
sqlstate         |
pg_cron_job_name |
query            | UPDATE t SET n = n + 1

Depends on:
 jobid |  status
-------+-----------
     7 | succeeded
  1234 | not found

Attempts:
 attempt |     started_at      | duration | sqlstate |                            error
---------+---------------------+----------+----------+-------------------------------------------------------------
       1 | 2025-03-04 05:06:07 | 12ms     | 40001    | ERROR:  could not serialize access due to concurrent update
       2 | 2025-03-04 05:06:08 | 500ms    | 40P01    | ERROR:  deadlock detected
      10 | 2025-03-04 05:06:10 | 0.4ms    |          |
`, b.String())

	// Neither: no table, not even empty.
	b.Reset()
	renderShow(&b, taskDetails{taskRow: r, Dependencies: []dependency{}, Attempts: []attempt{}})
	assert.NotContains(t, b.String(), "Depends on")
	assert.NotContains(t, b.String(), "Attempts")
	assert.True(t, strings.HasSuffix(b.String(), "\nquery            | UPDATE t SET n = n + 1\n"), b.String())
}

func TestShowJSONDependenciesAndAttempts(t *testing.T) {
	r, deps, attempts := retriedTask()
	other := taskRow{JobID: 10, Query: "SELECT 1", Status: ptr("running")}
	db := &fakeStore{rows: []taskRow{r, other}, deps: map[int64][]dependency{9: deps}, attempts: map[int64][]attempt{9: attempts}}
	res := runWith(t, db, "", false, "show", "9", "-o", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	var got struct {
		JobID        int64 `json:"jobid"`
		Dependencies []map[string]any
		Attempts     []map[string]any
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &got), res.stdout)
	assert.Equal(t, int64(9), got.JobID, "the row's columns, and beside them:")
	assert.Equal(t, []map[string]any{{"jobid": 7.0, "status": "succeeded"}, {"jobid": 1234.0, "status": nil}}, got.Dependencies)
	require.Len(t, got.Attempts, 3)
	assert.Equal(t, 1.0, got.Attempts[0]["attempt"])
	assert.Equal(t, "40001", got.Attempts[0]["sqlstate"])
	assert.Equal(t, "ERROR:  could not serialize access due to concurrent update\nCONTEXT:  SQL statement\n",
		got.Attempts[0]["error_message"], "the whole error")
	assert.Equal(t, 0.012, got.Attempts[0]["duration_seconds"])
	assert.Equal(t, t0.UTC(), mustTime(t, got.Attempts[0]["started_at"]).UTC())
	assert.Nil(t, got.Attempts[2]["sqlstate"], "succeeded")
	assert.Nil(t, got.Attempts[2]["error_message"], "succeeded")

	res = runWith(t, db, "", false, "show", "10", "-o", "json")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "\n  \"dependencies\": [],\n  \"attempts\": []\n}\n", "none: empty lists")

	res = runWith(t, db, "", false, "show", "9")
	require.Equal(t, exitOK, res.code, res.stderr)
	assert.Contains(t, res.stdout, "\nDepends on:\n")
	assert.Contains(t, res.stdout, "\nAttempts:\n")
}

func TestRenderListWaitsFor(t *testing.T) {
	soon := t0.Add(250 * time.Second)
	rows := []taskRow{
		{JobID: 12, Query: "SELECT 1", StartedAt: t0, Status: ptr("running")},
		{JobID: 13, Query: "SELECT 2", StartedAt: t0, Status: ptr("pending"), WaitsFor: []int64{12}},
		{JobID: 14, Query: "SELECT 3", StartedAt: t0, Status: ptr("pending"), Due: &soon, dueIn: ptr(250.0)},
	}
	var b bytes.Buffer
	renderList(&b, rows)
	assert.Equal(t, ` jobid | status  |   due    | job_name |     started_at      | duration |  query
-------+---------+----------+----------+---------------------+----------+----------
    12 | running |          |          | 2025-03-04 05:06:07 |          | SELECT 1
    13 | pending | after 12 |          | 2025-03-04 05:06:07 |          | SELECT 2
    14 | pending | in 4m10s |          | 2025-03-04 05:06:07 |          | SELECT 3
(3 rows)
`, b.String())

	// Waiting for other tasks alone also brings the column.
	b.Reset()
	renderList(&b, rows[:2])
	assert.Contains(t, b.String(), " | pending | after 12 | ")

	assert.Equal(t, "after 1, 2, 3", afterText([]int64{1, 2, 3}))
	assert.Equal(t, "after 1, 2, 3 and 2 more", afterText([]int64{1, 2, 3, 4, 5}))

	r := runWith(t, &fakeStore{rows: rows}, "", false, "list", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var got []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	assert.Nil(t, got[0]["waits_for"])
	assert.Equal(t, []any{12.0}, got[1]["waits_for"])
}
