package control

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const retention = time.Hour

// Issue 17, item 5: a scout that found no finished task must not erase the
// note of a commit that finished tasks after its look began; retention
// would then never run in a database that has gone quiet. Notes numbered
// at or below the scout's look count were seen by it.
func TestHistoryScoutFindingKeepsALaterCommitsNote(t *testing.T) {
	finished := epoch.Add(-2 * retention)
	tests := []struct {
		name  string
		notes []HistoryNote
		due   bool
	}{
		{"the note came after the look, taken in an earlier round", []HistoryNote{
			{DB: dbX, Finished: finished, NoteGen: 5},
			{DB: dbX, Set: true, Look: 4},
		}, true},
		{"the note came after the look, taken with the finding", []HistoryNote{
			{DB: dbX, Set: true, Look: 4, Finished: finished, NoteGen: 5},
		}, true},
		{"the note came before the look: the scout saw it", []HistoryNote{
			{DB: dbX, Finished: finished, NoteGen: 4},
			{DB: dbX, Set: true, Look: 4},
		}, false},
		{"a later look replaces an earlier finding", []HistoryNote{
			{DB: dbX, Finished: finished, NoteGen: 5},
			{DB: dbX, Set: true, Look: 4},
			{DB: dbX, Set: true, Look: 6},
		}, false},
		{"the finding's oldest stays when it is earlier", []HistoryNote{
			{DB: dbX, Finished: epoch, NoteGen: 5},
			{DB: dbX, Set: true, Look: 4, Oldest: finished},
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h History
			for _, n := range tc.notes {
				h.Apply(n, epoch)
			}
			if tc.due {
				assert.Equal(t, []uint32{dbX}, h.Due(epoch, retention))
			} else {
				assert.Empty(t, h.Due(epoch, retention))
			}
		})
	}
}

func TestHistoryDue(t *testing.T) {
	h := History{RetryAfter: time.Minute}
	h.Apply(HistoryNote{DB: dbX, Finished: epoch, NoteGen: 1}, epoch)
	assert.Empty(t, h.Due(epoch.Add(retention-time.Millisecond), retention))
	assert.Equal(t, []uint32{dbX}, h.Due(epoch.Add(retention), retention))
	assert.Empty(t, h.Due(epoch.Add(retention), 0), "no retention: nothing is ever due")

	// Rows due were locked: no scout for a minute.
	now := epoch.Add(retention)
	h.Apply(HistoryNote{DB: dbX, Set: true, Look: 1, Oldest: epoch, StillDue: true}, now)
	assert.Empty(t, h.Due(now.Add(time.Minute-time.Millisecond), retention))
	assert.Equal(t, []uint32{dbX}, h.Due(now.Add(time.Minute), retention))

	// A commit's earlier note is taken at once, even after a round that
	// found nothing due; so is a shorter retention.
	h.Apply(HistoryNote{DB: dbX, Set: true, Look: 1}, now)
	h.Apply(HistoryNote{DB: dbY, Finished: now, NoteGen: 2}, now)
	assert.Empty(t, h.Due(now, retention))
	assert.Equal(t, []uint32{dbY}, h.Due(now.Add(time.Nanosecond), time.Nanosecond))
	h.Apply(HistoryNote{DB: dbX, Finished: epoch, NoteGen: 3}, now)
	assert.ElementsMatch(t, []uint32{dbX}, h.Due(now, retention))
	h.Forget(dbX)
	assert.Empty(t, h.Due(now, retention))
}

// More databases with finished tasks than the shared inbox has places
// (512): each is recorded in the launcher's memory, falls due, and gets one
// scout, off the board. Before, a database beyond the 512th had no entry,
// and its history was never deleted until a start sweep.
func TestLauncherHistoryOfMoreDatabasesThanTheInboxHolds(t *testing.T) {
	const n = 1500
	dbs := manyDatabases(n)
	c := newCluster()
	c.boardCap = boardPlaces
	c.retention = retention
	var look uint64
	// The tasks finished across many rounds: the inbox holds at most 512 notes at a time.
	batches := map[int]func(){}
	for b := 0; b*boardPlaces < n; b++ {
		batch := dbs[b*boardPlaces : min(n, (b+1)*boardPlaces)]
		batches[b+1] = func() {
			for _, db := range batch {
				look++
				c.historyNotes = append(c.historyNotes, HistoryNote{DB: db, Finished: epoch.Add(-retention), NoteGen: look})
			}
		}
	}
	// Each scout deletes what is due and notes that none is left.
	scouts := func() {
		for _, s := range c.slots {
			if s.Scout() {
				c.historyNotes = append(c.historyNotes, HistoryNote{DB: s.DB, Set: true, Look: look})
			}
		}
	}
	rounds := n/(c.capacity-1) + 20
	extra := map[int]func(){}
	for i := 1; i < rounds; i++ {
		batch := batches[i]
		extra[i] = func() {
			scouts()
			if batch != nil {
				batch()
			}
		}
	}
	l := scoutsFinish(t, c, rounds, extra)
	per, _ := scoutLaunches(c.launches)
	require.Len(t, per, n, "a scout for each database")
	for db, k := range per {
		require.Equal(t, 1, k, "scouts of database %d", db)
	}
	assert.Zero(t, c.count("Note"), "nothing on the board")
	assert.Zero(t, l.history.Len(), "no history left to delete")
	assert.Equal(t, 1, c.count("Databases"), "no sweep but the launcher's first")
}

// The inbox overflowed: notes were lost, and a sweep of every database
// makes up for them (its scouts note each one again).
func TestLauncherSweepsWhenTheHistoryInboxOverflowed(t *testing.T) {
	c := newCluster()
	c.databases = []uint32{dbX, dbY}
	c.before = []func(){nil, func() {
		c.reaps = [][]Exit{{{Key: scoutX, Clean: true}, {Key: scoutY, Clean: true}}}
		c.historyOverflow = true
	}}
	_, log := runRounds(t, c, 3)
	assert.Equal(t, 2, c.count("Databases"), "the launcher's first sweep, and the overflow's")
	assert.Equal(t, []launched{{scoutX, false}, {scoutY, false}, {scoutX, false}, {scoutY, false}}, c.launches)
	assert.Equal(t, []string{"lantern_async launcher: the history inbox overflowed; every database (2) is queued for a scout"},
		log.lines)
}
