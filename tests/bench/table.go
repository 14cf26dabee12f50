package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"unicode/utf8"
)

// The table: sections of rows, printed in section order, then a note per
// section on how it was measured.

type tableRow struct {
	name, value, unit, n, target string
}

type tableSection struct {
	id, title, how string
	rows           []tableRow
}

// table collects rows by section (printed in id order, whatever order the
// measurements ran in) and named figures other rows are computed from.
type table struct {
	sections []*tableSection
	cur      *tableSection
	figures  map[string]float64
}

// section makes id the section add appends to (created with title and
// how, the note printed under the table, the first time).
func (t *table) section(id, title, how string) {
	for _, s := range t.sections {
		if s.id == id {
			t.cur = s
			return
		}
	}
	t.cur = &tableSection{id: id, title: title, how: how}
	t.sections = append(t.sections, t.cur)
}

// add appends a row; n is the number of samples (an int, 0 for none, or a
// string).
func (t *table) add(name, value, unit string, n any, target string) {
	ns := fmt.Sprint(n)
	if n == 0 {
		ns = ""
	}
	t.cur.rows = append(t.cur.rows, tableRow{name, value, unit, ns, target})
}

func (t *table) set(name string, v float64) {
	if t.figures == nil {
		t.figures = map[string]float64{}
	}
	t.figures[name] = v
}

// ratios adds row 4's ratios of the warm start p50 to the baselines.
func (t *table) ratios() {
	warm, ok := t.figures["warm_p50"]
	if !ok {
		return
	}
	t.section("4", "baselines", "")
	for _, r := range []struct{ key, what string }{
		{"connect_ms", "new connection + SELECT 1"},
		{"insert_ms", "durable one-row INSERT"},
	} {
		if base, ok := t.figures[r.key]; ok && base > 0 {
			t.add("warm start p50 / "+r.what, fmt.Sprintf("%.2f", warm/base), "×", 0, "")
		}
	}
}

func (t *table) print(w io.Writer) {
	// Numbered sections in numeric order ("9" before "10").
	sort.SliceStable(t.sections, func(i, j int) bool {
		a, b := t.sections[i].id, t.sections[j].id
		return len(a) < len(b) || len(a) == len(b) && a < b
	})
	head := tableRow{"measurement", "value", "unit", "samples", "target"}
	width := []int{0, 0, 0, 0, 0}
	fit := func(r tableRow) {
		for i, c := range []string{r.name, r.value, r.unit, r.n, r.target} {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	fit(head)
	for _, s := range t.sections {
		fit(s.heading())
		for _, r := range s.rows {
			fit(r)
		}
	}
	line := func(r tableRow) {
		cells := []string{r.name, r.value, r.unit, r.n, r.target}
		var b strings.Builder
		b.WriteString("| ")
		for i, c := range cells {
			pad := width[i] - utf8.RuneCountInString(c)
			if i == 1 || i == 3 { // numbers right-aligned
				b.WriteString(strings.Repeat(" ", pad) + c)
			} else {
				b.WriteString(c + strings.Repeat(" ", pad))
			}
			b.WriteString(" | ")
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	rule := func() {
		var b strings.Builder
		b.WriteString("|")
		for _, n := range width {
			b.WriteString(strings.Repeat("-", n+2) + "|")
		}
		fmt.Fprintln(w, b.String())
	}
	line(head)
	rule()
	for _, s := range t.sections {
		line(s.heading())
		for _, r := range s.rows {
			line(r)
		}
	}
	fmt.Fprintln(w)
	for _, s := range t.sections {
		if s.how != "" {
			fmt.Fprintf(w, "%s. %s: %s\n", s.id, s.title, s.how)
		}
	}
}

func (s *tableSection) heading() tableRow {
	return tableRow{name: "**" + s.id + ". " + s.title + "**"}
}

// percentile is the nearest-rank p-th percentile of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

// ms formats milliseconds.
func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
