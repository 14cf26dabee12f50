package control

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A start-sweep scout asked to leave before it swept (its database is
// being renamed or copied just after the server started) says so, and its
// process does not exit cleanly: the launcher takes only a clean scout
// exit for the end of the start sweep.
func TestStartSweepSurvivesAScoutThatLeftBeforeSweeping(t *testing.T) {
	site := newSite()
	site.retiring = []bool{true}
	swept, err := (&Scout{Site: site, Log: &fakeLogger{}, StartSweep: true}).Run()
	require.NoError(t, err)
	require.False(t, swept, "it left before sweeping")
	require.Zero(t, site.count("FailOrphans"), "it swept nothing")

	clk := &clock{now: epoch}
	c := newCluster()
	c.reconcileNeeded = true
	c.databases = []uint32{dbX}
	c.reaps = [][]Exit{nil, {{Key: scoutX, Clean: swept}}}                       // its demand is still on the board
	c.before = []func(){nil, nil, func() { clk.now = clk.now.Add(time.Second) }} // its backoff ends
	l, _ := newLauncher(c, clk.Now)
	c.rounds = 3
	l.Run()
	assert.Equal(t, []launched{{scoutX, true}, {scoutX, true}}, c.launches,
		"the scout that left unswept is relaunched for the start sweep")
}
