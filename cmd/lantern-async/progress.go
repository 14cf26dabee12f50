package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/schollz/progressbar/v3"
)

// lineReporter prints plain lines, for output that is not a terminal: one
// when a task starts running or changes phase, one when it ends.
type lineReporter struct {
	out  io.Writer
	last map[int64]string // the last line printed for each task
}

func (r *lineReporter) update(st taskState) {
	if st.Status != "running" {
		return
	}
	line := runningLine(st)
	if r.last[st.JobID] != line {
		r.last[st.JobID] = line
		fmt.Fprintln(r.out, line)
	}
}

func (r *lineReporter) finish(st taskState) { fmt.Fprintln(r.out, outcomeLine(st)) }
func (r *lineReporter) stop()               {}

// runningLine is "task 42 running", with the command and phase when the
// task reports progress.
func runningLine(st taskState) string {
	if st.Progress == nil || (st.Progress.Command == "" && st.Progress.Phase == "") {
		return fmt.Sprintf("task %d running", st.JobID)
	}
	return fmt.Sprintf("task %d running: %s", st.JobID, activity(*st.Progress))
}

// activity is "CREATE INDEX, building index: scanning table".
func activity(p progress) string {
	switch {
	case p.Command == "":
		return p.Phase
	case p.Phase == "":
		return p.Command
	}
	return p.Command + ", " + p.Phase
}

// barMax is the bar's scale: tenths of a percent.
const barMax = 1000

// barReporter draws a progress bar for the first unfinished task (the one
// wait_task is waiting for) and prints a line when any task ends.
type barReporter struct {
	out   io.Writer
	bar   *progressbar.ProgressBar
	job   int64 // the bar's task, 0 when none
	known bool  // the bar has a percent (or is a spinner)
	est   map[int64]*estimator
}

func newBarReporter(out io.Writer) *barReporter {
	return &barReporter{out: out, est: map[int64]*estimator{}}
}

func (r *barReporter) update(st taskState) {
	if r.job != 0 && r.job != st.JobID {
		return
	}
	var pct *float64
	var left time.Duration
	var haveLeft bool
	if st.Progress != nil {
		pct = st.Progress.Percent
		e := r.est[st.JobID]
		if e == nil {
			e = &estimator{}
			r.est[st.JobID] = e
		}
		if pct != nil {
			left, haveLeft = e.observe(st.Progress.Phase, st.Progress.Elapsed, *pct)
		}
	}
	bar := r.barFor(st.JobID, pct != nil)
	bar.Describe(barDescription(st, left, haveLeft))
	if pct != nil { // renders again only when the percent changed
		_ = bar.Set64(min(barMax-1, max(0, int64(math.Round(*pct*10)))))
	}
}

// barFor returns the bar of job, a new one when it has none or changes
// between a percent and a spinner.
func (r *barReporter) barFor(job int64, known bool) *progressbar.ProgressBar {
	if r.bar != nil && r.job == job && r.known == known {
		return r.bar
	}
	r.clear()
	limit := int64(-1) // a spinner
	if known {
		limit = barMax
	}
	r.bar = progressbar.NewOptions64(limit,
		progressbar.OptionSetWriter(r.out),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionUseANSICodes(true),
	)
	r.job, r.known = job, known
	return r.bar
}

func (r *barReporter) finish(st taskState) {
	delete(r.est, st.JobID)
	if st.JobID == r.job {
		r.clear()
		fmt.Fprintln(r.out, outcomeLine(st))
		return
	}
	if r.bar != nil {
		_ = r.bar.Clear()
	}
	fmt.Fprintln(r.out, outcomeLine(st))
	if r.bar != nil {
		_ = r.bar.RenderBlank()
	}
}

func (r *barReporter) stop() { r.clear() }

// clear erases the bar and forgets it.
func (r *barReporter) clear() {
	if r.bar != nil {
		_ = r.bar.Clear()
	}
	r.bar, r.job = nil, 0
}

// barDescription follows the bar: "task 42 building index: scanning table,
// 3.2s elapsed, about 4s left".
func barDescription(st taskState, left time.Duration, haveLeft bool) string {
	if st.Status != "running" {
		return fmt.Sprintf("task %d %s", st.JobID, st.Status)
	}
	what := "running"
	if st.Progress != nil && st.Progress.Phase != "" {
		what = st.Progress.Phase
	} else if st.Progress != nil && st.Progress.Command != "" {
		what = st.Progress.Command
	}
	s := fmt.Sprintf("task %d %s", st.JobID, what)
	if st.Progress != nil {
		s += fmt.Sprintf(", %s elapsed", formatDuration(st.Progress.Elapsed))
	}
	if haveLeft {
		s += fmt.Sprintf(", about %s left in this phase", formatEstimate(left))
	}
	return s
}

// estimator guesses the time left in a task's current phase from how fast
// its percent has moved since the phase was first seen. Times are the
// task's elapsed time as the server reports it.
type estimator struct {
	phase string
	t0    time.Duration // elapsed when the phase was first seen
	p0    float64       // its percent then
	last  float64       // the last percent seen
}

// minObserved is how long a phase is watched before an estimate is given.
const minObserved = time.Second

// observe records a sample and returns the estimated time left in the
// phase, when there is one.
func (e *estimator) observe(phase string, elapsed time.Duration, percent float64) (time.Duration, bool) {
	defer func() { e.last = percent }()
	if phase != e.phase || percent < e.last || elapsed < e.t0 {
		e.phase, e.t0, e.p0 = phase, elapsed, percent
		return 0, false
	}
	dt, dp := elapsed-e.t0, percent-e.p0
	if dt < minObserved || dp <= 0 {
		return 0, false
	}
	return time.Duration(float64(dt) * (100 - percent) / dp), true
}

// formatEstimate rounds an estimate to what it is worth: 7s, 4m05s.
func formatEstimate(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return formatDuration(d)
}
