package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// show's text: the row as an expanded record, its error, then the tasks it
// depends on and its attempts.

// field is one line of an expanded record.
type field struct{ name, value string }

// showFields are the columns show prints as a record; error_message
// follows the record, as psql prints an error.
func showFields(r taskRow) []field {
	fields := []field{
		{"jobid", strconv.FormatInt(r.JobID, 10)},
		{"job_name", deref(r.JobName)},
		{"status", deref(r.Status)},
	}
	if r.Due != nil { // a pending task: when it may start
		due := formatTime(*r.Due)
		if later := dueLater(r); later != "" && later != due {
			due += " (" + later + ")"
		}
		fields = append(fields, field{"due", due})
	}
	return append(fields, []field{
		{"username", r.Username},
		{"started_at", formatTime(r.StartedAt)},
		{"duration", formatSeconds(r.DurationSeconds)},
		{"sqlstate", deref(r.SQLState)},
		{"pg_cron_job_name", deref(r.PgCronJobName)},
		{"query", r.Query},
	}...)
}

// renderShow writes the task as psql's expanded display (\x) does, then its
// error_message as psql prints an error, then the tasks it depends on and
// its attempts, each a table when it has any.
func renderShow(w io.Writer, d taskDetails) {
	renderRecord(w, showFields(d.taskRow))
	if d.ErrorMessage != nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.TrimRight(*d.ErrorMessage, "\n"))
	}
	if len(d.Dependencies) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Depends on:")
		renderDependencies(w, d.Dependencies)
	}
	if len(d.Attempts) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Attempts:")
		renderAttempts(w, d.Attempts)
	}
}

// renderDependencies is a table of the tasks one waits for and their
// status ("not found": deleted since, or not the caller's).
func renderDependencies(w io.Writer, deps []dependency) {
	cells := make([][]string, len(deps))
	for i, d := range deps {
		status := deref(d.Status)
		if d.Status == nil {
			status = "not found"
		}
		cells[i] = []string{strconv.FormatInt(d.JobID, 10), status}
	}
	renderTable(w, []string{"jobid", "status"}, []bool{true}, cells)
}

// renderAttempts is a table of a task's attempts, with the first line of
// each error (none: the attempt succeeded).
func renderAttempts(w io.Writer, attempts []attempt) {
	cells := make([][]string, len(attempts))
	for i, a := range attempts {
		first, _, _ := strings.Cut(strings.TrimSpace(deref(a.ErrorMessage)), "\n")
		cells[i] = []string{strconv.Itoa(int(a.Attempt)), formatTime(a.StartedAt),
			formatDuration(seconds(a.DurationSeconds)), deref(a.SQLState), first}
	}
	renderTable(w, []string{"attempt", "started_at", "duration", "sqlstate", "error"}, []bool{true}, cells)
}

// renderRecord is psql's expanded display of one record: a multi-line value
// continues on the next lines, each line but the last ending in "+".
func renderRecord(w io.Writer, fields []field) {
	nameWidth, valueWidth := 0, 0
	for _, f := range fields {
		nameWidth = max(nameWidth, width(f.name))
		for _, l := range strings.Split(f.value, "\n") {
			valueWidth = max(valueWidth, width(l))
		}
	}
	head := "-[ RECORD 1 ]"
	fmt.Fprintln(w, head+strings.Repeat("-", max(0, nameWidth+1-width(head)))+"+"+strings.Repeat("-", valueWidth+1))
	for _, f := range fields {
		lines := strings.Split(f.value, "\n")
		for i, l := range lines {
			name := ""
			if i == 0 {
				name = f.name
			}
			if i < len(lines)-1 {
				l = pad(l, valueWidth, false) + "+"
			}
			fmt.Fprintln(w, strings.TrimRight(pad(name, nameWidth, false)+" | "+l, " "))
		}
	}
}
