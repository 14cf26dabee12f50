package control

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A start-sweep scout asked to leave before it swept (its database is
// being renamed or copied just after the server started) returns nil, so
// its process exits cleanly; the launcher takes a clean scout exit for the
// end of the start sweep.
func TestStartSweepSurvivesAScoutThatLeftBeforeSweeping(t *testing.T) {
	t.Skip("BUG: Scout.Run returns nil when Retiring() stops it before any sweep, the process exits 0 " +
		"(la_slot_mark_clean), and Launcher.reap deletes startSweep[db] on any clean scout exit; the next " +
		"scout of that database gets startSweep=false, so the tasks the previous server life left running " +
		"are failed as \"the process running this task exited\" instead of \"the server stopped\"")
	site := newSite()
	site.retiring = []bool{true}
	err := (&Scout{Site: site, Log: &fakeLogger{}, StartSweep: true}).Run()
	require.NoError(t, err)
	require.Zero(t, site.count("FailOrphans"), "it swept nothing")

	c := newCluster()
	c.reconcileNeeded = true
	c.databases = []uint32{dbX}
	c.reaps = [][]Exit{nil, {{Key: scoutX, Clean: err == nil}}} // its demand is still on the board
	runRounds(t, c, 2)
	assert.Equal(t, []launched{{scoutX, true}, {scoutX, true}}, c.launches)
}
