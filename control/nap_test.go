package control

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// However often sweeps of a database are asked for, its scouts start no
// more often than ScoutRest; the launcher wakes when the rest is over.
func TestLauncherRestsBetweenScoutsOfADatabase(t *testing.T) {
	clk := &clock{now: epoch}
	c := newCluster()
	c.demand(scoutX, 0)
	c.reaps = [][]Exit{nil, {{Key: scoutX, Clean: true}}}
	c.before = []func(){
		nil,
		func() { c.demand(scoutX, 0); c.demand(scoutY, 0) }, // asked again at once; Y for the first time
		func() { clk.now = clk.now.Add(time.Second) },
	}
	l, _ := newLauncher(c, clk.Now)
	l.ScoutRest = time.Second
	c.rounds = 3
	l.Run()

	assert.Equal(t, []launched{{scoutX, false}, {scoutY, false}, {scoutX, false}}, c.launches,
		"X's second scout waits for the end of its rest; Y's does not")
	assert.Equal(t, time.Second, c.waits[1], "woken when X's rest is over")
}

// Nobody wakes the launcher when a DROP/ALTER/CREATE DATABASE's block
// ends: while a demand is blocked it looks again soon, and serves it then.
func TestLauncherLooksAgainSoonAtABlockedDatabase(t *testing.T) {
	c := newCluster()
	c.demand(keyA, 1)
	c.verdicts[keyA] = DatabaseBlocked
	c.before = []func(){nil, func() { c.verdicts[keyA] = Runnable }}
	l, _ := newLauncher(c, fixedNow)
	l.BlockedRecheck = 50 * time.Millisecond
	c.rounds = 3
	l.Run()

	assert.Equal(t, []launched{{keyA, false}}, c.launches, "launched once the block is over, not forgotten")
	assert.Equal(t, 50*time.Millisecond, c.waits[0], "blocked: look again soon")
	assert.Equal(t, naptime, c.waits[1], "nothing blocked any more")
}

// A hold-back (a scout's rest, a backoff) that was in force when the round
// looked at the board but ends before the round is over (the catalog look
// takes time, a wait may end a little early) still ends the nap: the held
// demand is served at once, not after a whole naptime.
func TestLauncherNapCoversAHoldBackThatEndsDuringTheRound(t *testing.T) {
	const hold = time.Second
	tests := []struct {
		name     string
		key      Key
		reaps    [][]Exit
		launched []Key
	}{
		{"a scout's rest", scoutX, [][]Exit{nil, {{Key: scoutX, Clean: true}}}, []Key{scoutX, scoutX}},
		{"a backoff", keyA, [][]Exit{{{Key: keyA}}}, []Key{keyA}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: epoch}
			c := newCluster()
			c.demand(tc.key, 1)
			c.reaps = tc.reaps
			c.before = []func(){
				nil,
				func() {
					c.demand(tc.key, 0) // asked again
					clk.now = epoch.Add(hold - 100*time.Microsecond)
					c.checking = func() { clk.now = clk.now.Add(200 * time.Microsecond) }
				},
				func() { c.checking = nil },
			}
			l, _ := newLauncher(c, clk.Now)
			l.ScoutRest = hold
			l.Backoff = Backoff{Min: hold, Max: time.Minute}
			c.rounds = 3
			l.Run()

			assert.Equal(t, time.Millisecond, c.waits[1], "the hold-back ended during round 2: look again at once")
			assert.Equal(t, tc.launched, keysOf(c.launches), "held in round 2, served in round 3")
		})
	}
}

func TestLauncherNap(t *testing.T) {
	tests := []struct {
		name    string
		backoff time.Duration // Min of the key that just failed; 0 for none
		later   time.Duration // how long after the failure the second round runs
		waits   []time.Duration
	}{
		{name: "no backoff: the naptime", waits: []time.Duration{naptime, naptime}},
		{name: "a shorter backoff shortens the nap", backoff: 250 * time.Millisecond,
			waits: []time.Duration{250 * time.Millisecond, 250 * time.Millisecond}},
		{name: "to what is left of it", backoff: 2 * time.Second, later: 1500 * time.Millisecond,
			waits: []time.Duration{2 * time.Second, 500 * time.Millisecond}},
		{name: "a backoff over: the naptime again", backoff: 2 * time.Second, later: 2 * time.Second,
			waits: []time.Duration{2 * time.Second, naptime}},
		{name: "a longer backoff: the naptime", backoff: 10 * time.Second,
			waits: []time.Duration{naptime, naptime}},
		{name: "a sub-millisecond backoff: 1ms", backoff: 100 * time.Microsecond,
			waits: []time.Duration{time.Millisecond, time.Millisecond}},
		{name: "less than a millisecond left: 1ms", backoff: time.Second, later: time.Second - time.Microsecond,
			waits: []time.Duration{time.Second, time.Millisecond}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: epoch}
			c := newCluster()
			if tc.backoff > 0 {
				c.reaps = [][]Exit{{{Key: keyA}}}
			}
			c.before = []func(){nil, func() { clk.now = clk.now.Add(tc.later) }}
			l, _ := newLauncher(c, clk.Now)
			l.Backoff = Backoff{Min: tc.backoff, Max: time.Minute}
			c.rounds = 2
			l.Run()
			assert.Equal(t, tc.waits, c.waits)
		})
	}
}

func TestLauncherNapsUntilTheEarliestBackoffEnds(t *testing.T) {
	clk := &clock{now: epoch}
	c := newCluster()
	c.reaps = [][]Exit{{{Key: keyA}}, {{Key: keyC}}} // until 1s, then 1.5s
	c.before = []func(){nil, func() { clk.now = clk.now.Add(500 * time.Millisecond) }}
	l, _ := newLauncher(c, clk.Now)
	c.rounds = 2
	l.Run()
	assert.Equal(t, []time.Duration{time.Second, 500 * time.Millisecond}, c.waits)
}
