package bgworker

import (
	"fmt"
	"time"
)

// Costs is where a worker's time went, phase by phase, measured on its
// own clock around each call into PostgreSQL. The worker logs it when it
// exits (DEBUG1), so that a benchmark can tell the claim from the reset
// from the Go loop around them.
type Costs struct {
	Tasks   int           // tasks run
	Claims  int           // claims made, including those that found nothing
	Claim   time.Duration // claiming, with the previous outcome when it went in too
	Execute time.Duration // running the tasks' query strings
	Reset   time.Duration // closing each task to cancels, and DISCARD ALL
	Records int           // outcomes recorded alone, not with a claim
	Record  time.Duration
	Checks  int           // stop and retire checks: calls that do almost nothing,
	Check   time.Duration // so their mean is the cost of one call into PostgreSQL
	Busy    time.Duration // all of Run but its idle waits: the phases above and the Go loop around them
}

// String is the line the worker logs: means per task, in microseconds.
func (c Costs) String() string {
	if c.Tasks == 0 {
		return fmt.Sprintf("no task run, %d claims", c.Claims)
	}
	per := func(d time.Duration, n int) float64 {
		if n == 0 {
			return 0
		}
		return float64(d.Nanoseconds()) / 1e3 / float64(n)
	}
	rest := c.Busy - c.Claim - c.Execute - c.Reset - c.Record - c.Check
	return fmt.Sprintf("%d tasks, %d claims; per task in µs: claim %.1f, execute %.1f, reset %.1f, "+
		"record alone %.1f (%d times), the rest (the Go loop) %.1f; one near-empty call into PostgreSQL %.2f µs (%d calls)",
		c.Tasks, c.Claims, per(c.Claim, c.Tasks), per(c.Execute, c.Tasks), per(c.Reset, c.Tasks),
		per(c.Record, c.Tasks), c.Records, per(rest, c.Tasks), per(c.Check, c.Checks), c.Checks)
}

// Costs reports where the worker's time went so far.
func (w *Worker) Costs() Costs { return w.costs }
