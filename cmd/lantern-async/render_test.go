package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.Local)

func sampleRows() []taskRow {
	return []taskRow{
		{JobID: 5, Query: "CREATE INDEX ON items\n  USING hnsw (v)", JobName: ptr("index items"), Username: "alice",
			StartedAt: t0, Status: ptr("running")},
		{JobID: 123, Query: "SELECT 1", Username: "alice", StartedAt: t0, DurationSeconds: ptr(3.21),
			Status: ptr("succeeded")},
	}
}

func TestRenderList(t *testing.T) {
	var b bytes.Buffer
	renderList(&b, sampleRows())
	assert.Equal(t, ` jobid |  status   |  job_name   |     started_at      | duration |                query
-------+-----------+-------------+---------------------+----------+--------------------------------------
     5 | running   | index items | 2025-03-04 05:06:07 |          | CREATE INDEX ON items USING hnsw (v)
   123 | succeeded |             | 2025-03-04 05:06:07 | 3.2s     | SELECT 1
(2 rows)
`, b.String())
}

func TestRenderShow(t *testing.T) {
	r := taskRow{JobID: 9, Query: "SELECT pg_sleep(haha);\nSELECT 2", Username: "bob", StartedAt: t0,
		DurationSeconds: ptr(0.0123), Status: ptr("failed"), SQLState: ptr("42703"),
		ErrorMessage: ptr("ERROR:  column \"haha\" does not exist\nLINE 1: SELECT pg_sleep(haha);\n                        ^\n")}
	var b bytes.Buffer
	renderShow(&b, taskDetails{taskRow: r})
	assert.Equal(t, `-[ RECORD 1 ]----+-----------------------
jobid            | 9
job_name         |
status           | failed
username         | bob
started_at       | 2025-03-04 05:06:07
duration         | 12ms
sqlstate         | 42703
pg_cron_job_name |
query            | SELECT pg_sleep(haha);+
                 | SELECT 2

ERROR:  column "haha" does not exist
LINE 1: SELECT pg_sleep(haha);
                        ^
`, b.String())
}

func TestListAndShowJSON(t *testing.T) {
	db := &fakeStore{rows: sampleRows()}
	r := runWith(t, db, "", false, "list", "--all", "--output", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var got []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	require.Len(t, got, 2)
	assert.Equal(t, 5.0, got[0]["jobid"])
	assert.Equal(t, "CREATE INDEX ON items\n  USING hnsw (v)", got[0]["query"], "the full query")
	assert.Nil(t, got[0]["duration_seconds"])
	assert.Equal(t, 3.21, got[1]["duration_seconds"])
	assert.Equal(t, [][]string{nil}, db.listed, "--all: no status filter")

	r = runWith(t, &fakeStore{}, "", false, "list", "-o", "json")
	assert.Equal(t, "[]\n", r.stdout)

	r = runWith(t, db, "", false, "show", "123", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var one map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &one))
	assert.Equal(t, "succeeded", one["status"])

	r = runWith(t, db, "", false, "show", "8")
	assert.Equal(t, exitTask, r.code)
	assert.Equal(t, "lantern-async: task 8 not found: it does not exist or belongs to another role\n", r.stderr)
}

func TestListStatuses(t *testing.T) {
	for _, tc := range []struct {
		f    listFlags
		want []string
	}{
		{listFlags{}, []string{"pending", "running"}},
		{listFlags{all: true}, nil},
		{listFlags{statuses: []string{"Failed", "canceled", "failed"}}, []string{"failed", "canceled"}},
		{listFlags{all: true, statuses: []string{"running"}}, []string{"running"}},
	} {
		got, err := listStatuses(tc.f)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "%+v", tc.f)
	}
}

func TestCancel(t *testing.T) {
	db := &fakeStore{canceled: map[int64]bool{1: true}, rows: []taskRow{{JobID: 2, Status: ptr("succeeded")}}}
	r := runWith(t, db, "", false, "cancel", "1", "2", "3")
	assert.Equal(t, exitTask, r.code)
	assert.Equal(t, `task 1 canceled
task 2 not canceled: it has already finished (succeeded)
task 3 not canceled: not found (it does not exist or belongs to another role)
`, r.stdout)

	r = runWith(t, db, "", false, "cancel", "1")
	assert.Equal(t, exitOK, r.code)
}

func TestShorten(t *testing.T) {
	assert.Equal(t, "a b c", shorten(" a\n\tb   c ", 10))
	assert.Equal(t, "abcd…", shorten("abcdefgh", 5))
	assert.Equal(t, "ééé", shorten("ééé", 3))
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		400 * time.Microsecond:  "0.4ms",
		850 * time.Millisecond:  "850ms",
		3210 * time.Millisecond: "3.2s",
		65 * time.Second:        "1m05s",
		3723 * time.Second:      "1h02m03s",
	} {
		assert.Equal(t, want, formatDuration(d))
	}
}

func TestWithSQLState(t *testing.T) {
	assert.Equal(t, "ERROR:  x (SQLSTATE 1)\nDETAIL:  y", withSQLState("ERROR:  x\nDETAIL:  y\n", "1"))
	assert.Equal(t, "ERROR:  x", withSQLState("ERROR:  x", ""))
}

func TestRenderListDue(t *testing.T) {
	soon, later := t0.Add(250*time.Second), t0.Add(50*time.Hour)
	rows := []taskRow{
		{JobID: 1, Query: "SELECT 1", Username: "alice", StartedAt: t0, Status: ptr("pending"), Due: &soon, dueIn: ptr(250.4)},
		{JobID: 2, Query: "SELECT 2", Username: "alice", StartedAt: t0, Status: ptr("pending"), Due: &later, dueIn: ptr(50 * 3600.0)},
		{JobID: 3, Query: "SELECT 3", Username: "alice", StartedAt: t0, Status: ptr("pending"), Due: &t0, dueIn: ptr(-1.5)},
		{JobID: 4, Query: "SELECT 4", Username: "alice", StartedAt: t0, Status: ptr("running")},
	}
	var b bytes.Buffer
	renderList(&b, rows)
	assert.Equal(t, ` jobid | status  |         due         | job_name |     started_at      | duration |  query
-------+---------+---------------------+----------+---------------------+----------+----------
     1 | pending | in 4m10s            |          | 2025-03-04 05:06:07 |          | SELECT 1
     2 | pending | 2025-03-06 07:06:07 |          | 2025-03-04 05:06:07 |          | SELECT 2
     3 | pending |                     |          | 2025-03-04 05:06:07 |          | SELECT 3
     4 | running |                     |          | 2025-03-04 05:06:07 |          | SELECT 4
(4 rows)
`, b.String())
	assert.Equal(t, "in 850ms", dueLater(taskRow{Due: &soon, dueIn: ptr(0.85)}))

	// Nothing waiting for its time: no due column.
	b.Reset()
	renderList(&b, rows[2:])
	assert.NotContains(t, b.String(), "due")

	b.Reset()
	renderShow(&b, taskDetails{taskRow: rows[0]})
	assert.Contains(t, b.String(), "\nstatus           | pending\ndue              | 2025-03-04 05:10:17 (in 4m10s)\nusername ")
	b.Reset()
	renderShow(&b, taskDetails{taskRow: rows[2]})
	assert.Contains(t, b.String(), "\ndue              | 2025-03-04 05:06:07\n", "due already: the time alone")

	r := runWith(t, &fakeStore{rows: rows}, "", false, "list", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var got []map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
	assert.Equal(t, soon.UTC(), mustTime(t, got[0]["due"]).UTC())
	assert.Nil(t, got[3]["due"])
	assert.NotContains(t, got[0], "dueIn")
}

func mustTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "%v", v)
	tm, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return tm
}
