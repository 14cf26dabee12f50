package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Output formats of list and show.
const (
	outputTable = "table"
	outputJSON  = "json"
)

func checkOutput(format string) error {
	if format != outputTable && format != outputJSON {
		return usagef("--output must be %q or %q, not %q", outputTable, outputJSON, format)
	}
	return nil
}

// writeJSON writes v indented, with a final newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// queryWidth is how much of a query a list shows.
const queryWidth = 60

var listHeaders = []string{"jobid", "status", "job_name", "started_at", "duration", "query"}

// renderList writes rows as a psql-style aligned table with a row count;
// a due column follows status when a pending task is due later or waits
// for other tasks.
func renderList(w io.Writer, rows []taskRow) {
	withDue := false
	for _, r := range rows {
		withDue = withDue || pendingUntil(r) != ""
	}
	headers := listHeaders
	if withDue {
		headers = slices.Insert(slices.Clone(listHeaders), 2, "due")
	}
	cells := make([][]string, len(rows))
	for i, r := range rows {
		cells[i] = []string{
			strconv.FormatInt(r.JobID, 10), deref(r.Status), deref(r.JobName),
			formatTime(r.StartedAt), formatSeconds(r.DurationSeconds), shorten(r.Query, queryWidth),
		}
		if withDue {
			cells[i] = slices.Insert(cells[i], 2, pendingUntil(r))
		}
	}
	renderTable(w, headers, []bool{true}, cells)
	if len(rows) == 1 {
		fmt.Fprintln(w, "(1 row)")
	} else {
		fmt.Fprintf(w, "(%d rows)\n", len(rows))
	}
}

// pendingUntil is list's due: what a pending task waits for, its
// dependencies ("after 12, 13") or its time (dueLater); "" when nothing.
func pendingUntil(r taskRow) string {
	if len(r.WaitsFor) > 0 {
		return afterText(r.WaitsFor)
	}
	return dueLater(r)
}

// afterShown is how many jobids list's due names, at most.
const afterShown = 3

// afterText is "after 12", "after 12, 13, 14", "after 12, 13, 14 and 2 more".
func afterText(ids []int64) string {
	parts := make([]string, 0, afterShown)
	for _, id := range ids[:min(len(ids), afterShown)] {
		parts = append(parts, strconv.FormatInt(id, 10))
	}
	s := "after " + strings.Join(parts, ", ")
	if len(ids) > afterShown {
		s += fmt.Sprintf(" and %d more", len(ids)-afterShown)
	}
	return s
}

// dueWithin is how far ahead a due time is shown as a wait ("in 4m10s");
// later ones as the time.
const dueWithin = 24 * time.Hour

// dueLater says when a pending task that may not start yet is due: "in
// 4m10s" (from the server's clock when it was read), or the time when it
// is a day or more away; "" when it is not pending or is due already.
func dueLater(r taskRow) string {
	if r.Due == nil || r.dueIn == nil || *r.dueIn <= 0 {
		return ""
	}
	in := seconds(*r.dueIn)
	if in >= dueWithin {
		return formatTime(*r.Due)
	}
	if in >= time.Second {
		in = in.Round(time.Second)
	}
	return "in " + formatDuration(in)
}

// renderTable aligns cells under headers like psql: headers centered,
// columns separated by " | ", rightAlign[i] right-aligns column i.
func renderTable(w io.Writer, headers []string, rightAlign []bool, cells [][]string) {
	widths := make([]int, len(headers))
	for i, h := range headers {
		widths[i] = width(h)
	}
	for _, row := range cells {
		for i, c := range row {
			widths[i] = max(widths[i], width(c))
		}
	}
	line := func(parts []string) {
		fmt.Fprintln(w, strings.TrimRight(" "+strings.Join(parts, " | "), " "))
	}
	hs := make([]string, len(headers))
	dashes := make([]string, len(headers))
	for i, h := range headers {
		hs[i] = center(h, widths[i])
		dashes[i] = strings.Repeat("-", widths[i])
	}
	line(hs)
	fmt.Fprintln(w, "-"+strings.Join(dashes, "-+-")+"-")
	for _, row := range cells {
		parts := make([]string, len(row))
		for i, c := range row {
			parts[i] = pad(c, widths[i], i < len(rightAlign) && rightAlign[i])
		}
		line(parts)
	}
}

// shorten puts s on one line (runs of white space become one space) and
// cuts it to n characters, the last one "…" when cut.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// formatDuration is a short human form: 0.4ms, 850ms, 3.2s, 4m05s, 1h02m03s.
func formatDuration(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dh%02dm%02ds", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
	}
}

func formatSeconds(s *float64) string {
	if s == nil {
		return ""
	}
	return formatDuration(seconds(*s))
}

func formatTime(t time.Time) string {
	return t.Local().Format("2006-01-02 15:04:05")
}

func width(s string) int { return utf8.RuneCountInString(s) }

func pad(s string, n int, right bool) string {
	fill := strings.Repeat(" ", max(0, n-width(s)))
	if right {
		return fill + s
	}
	return s + fill
}

func center(s string, n int) string {
	left := max(0, n-width(s)) / 2
	return pad(strings.Repeat(" ", left)+s, n, false)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
