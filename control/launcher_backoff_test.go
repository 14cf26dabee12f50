package control

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestLauncherHoldsBackAKeyAfterAFailedStart(t *testing.T) {
	keyAinY := Key{DB: dbY, Role: keyA.Role}
	clk := &clock{now: epoch}
	c := newCluster()
	c.capacity = 8
	c.demand(keyA, 1)
	c.demand(keyB, 1)
	c.demand(keyAinY, 1)
	c.demand(scoutX, 0)
	c.reaps = [][]Exit{{{Key: keyA}}}
	c.before = []func(){nil, func() { clk.now = clk.now.Add(time.Second) }}
	l, log := newLauncher(c, clk.Now)
	c.rounds = 2
	l.Run()

	assert.Equal(t, []Key{keyB, keyAinY, scoutX, keyA}, keysOf(c.launches),
		"round 1: every key but A, in X or the same role in Y; round 2: A once its hold-back is over")
	assert.Equal(t, []time.Duration{time.Second, naptime}, c.waits,
		"round 1 sleeps until A's hold-back ends")
	assert.Equal(t, []string{
		"lantern_async launcher: a worker of role 10 for database 1 ended without doing its work; next launch in 1s",
	}, log.lines)
}

func TestLauncherDoublesTheHoldBackOfConsecutiveFailures(t *testing.T) {
	clk := &clock{now: epoch}
	c := newCluster()
	c.demand(keyA, 1)
	c.reaps = [][]Exit{{{Key: keyA}}, {{Key: keyA}}}
	c.before = []func(){nil, func() { clk.now = clk.now.Add(time.Second) }}
	l, log := newLauncher(c, clk.Now)
	c.rounds = 2
	l.Run()

	assert.Empty(t, c.launches, "held back in both rounds")
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, c.waits)
	assert.Equal(t, []string{
		"lantern_async launcher: a worker of role 10 for database 1 ended without doing its work; next launch in 1s",
		"lantern_async launcher: a worker of role 10 for database 1 ended without doing its work; next launch in 2s",
	}, log.lines)
}

func TestLauncherHoldsBackOnlyAfterUnproductiveExits(t *testing.T) {
	const (
		workerLine = "lantern_async launcher: a worker of role 10 for database 1 ended without doing its work; next launch in 1s"
		scoutLine  = "lantern_async launcher: a scout for database 1 ended without doing its work; next launch in 1s"
	)
	tests := []struct {
		name string
		exit Exit
		held Key // zero: nothing held back
		logs []string
	}{
		{name: "a worker that died at start", exit: Exit{Key: keyA}, held: keyA, logs: []string{workerLine}},
		{name: "a worker that ran nothing", exit: Exit{Key: keyA, Clean: true}, held: keyA, logs: []string{workerLine}},
		{name: "a worker that died mid-task", exit: Exit{Key: keyA, JobID: 4, Table: tasksTable, TasksRun: 2},
			held: keyA, logs: []string{workerLine}},
		{name: "a worker that ran tasks", exit: Exit{Key: keyA, Clean: true, TasksRun: 2}},
		{name: "a worker retired before its first claim", exit: Exit{Key: keyA, Clean: true, Retired: true}},
		{name: "a worker retired that then died", exit: Exit{Key: keyA, Retired: true}, held: keyA, logs: []string{workerLine}},
		{name: "a scout that swept", exit: Exit{Key: scoutX, Clean: true}},
		{name: "a scout that died", exit: Exit{Key: scoutX}, held: scoutX, logs: []string{scoutLine}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.demand(keyA, 1)
			c.demand(keyB, 1)
			c.demand(scoutX, 0)
			c.reaps = [][]Exit{{tc.exit}}

			_, log := runRounds(t, c, 1)
			launched := keysOf(c.launches)
			for _, k := range []Key{keyA, keyB, scoutX} {
				assert.Equal(t, k != tc.held, slices.Contains(launched, k), "%v launched", k)
			}
			assert.Equal(t, tc.logs, log.lines)
		})
	}
}
