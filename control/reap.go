package control

import "fmt"

// reap learns how processes ended. A task whose worker ended while running
// it goes to a scout of its database; so does a database whose last
// worker just finished its work, for the housekeeping only a scout does
// (rows that were never submitted through async_task).
func (l *Launcher) reap() error {
	exits, err := l.Cluster.Reap()
	if err != nil {
		return err
	}
	slots := l.Cluster.Slots()
	for _, e := range exits {
		l.observe(e)
		if e.Scout() {
			l.sweep.ended(e.DB, e.Clean)
			l.due.ended(e.DB, e.Clean)
		}
		switch {
		case e.Scout() && e.Clean:
			delete(l.startSweep, e.DB)
		case e.JobID != 0:
			if !e.Parked { // a parked outcome is in the lost list already
				l.Cluster.Lost(e)
			}
			l.Cluster.Note(Key{DB: e.DB})
		case e.TasksRun > 0 && !databaseBusy(slots, e.DB):
			l.Cluster.Note(Key{DB: e.DB})
		}
	}
	return nil
}

func databaseBusy(slots []Slot, db uint32) bool {
	for _, s := range slots {
		if s.DB == db {
			return true
		}
	}
	return false
}

func (l *Launcher) observe(e Exit) {
	if l.Backoff.Observe(e, l.now) {
		l.Log.Logf("lantern_async launcher: a %s for database %d ended without doing its work; next launch in %v",
			processName(e.Key), e.DB, l.Backoff.Delay(e.Key))
	}
}

func processName(k Key) string {
	if k.Scout() {
		return "scout"
	}
	return fmt.Sprintf("worker of role %d", k.Role)
}
