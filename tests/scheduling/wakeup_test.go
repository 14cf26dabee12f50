package scheduling

import (
	"context"
	"fmt"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/stretchr/testify/require"
)

// TestNoLostWakeups: several roles each submit one task about every
// second (the delay is in the submitting statement, on the server), so
// commits land at every phase of their workers' idle wait. Each task
// records how long after its submit it ran. Workers wait testkit.SlowIdleTimeout
// idle here, so each wake-up the test is about has a slow fallback that a
// lost one would show as: an idle worker not woken by its role's commit
// runs the task only after its idle timeout (10 s, most of it left: the
// worker went idle after its role's previous task, a second earlier); a
// launcher not woken by a commit acts on its next timer (its 10 s nap, or
// an idle worker's exit). A task that started within testkit.HandoffBound (5 s) was woken for; the
// rest of that time is launches on a loaded machine (the median and
// maximum are logged: on 2 busy cores, medians of 100-800 ms and maxima of
// 0.4-2.7 s with twice as many roles as slots, where most tasks need a
// fresh process). The slot handover when a worker runs out of tasks has a
// test of its own (TestFinishedWorkerGivesWayToWaitingRole): here other
// roles' commits wake the launcher often enough to hide its loss.
func TestNoLostWakeups(t *testing.T) {
	testkit.Begin(t)
	testkit.SetWorkerIdleTimeout(t, testkit.Connect(t, testkit.Superuser), testkit.SlowIdleTimeout)
	for _, v := range []struct {
		name  string
		roles int
	}{{"as many roles as slots", testkit.Cluster.MaxWorkers()}, {"twice as many roles as slots", 2 * testkit.Cluster.MaxWorkers()}} {
		t.Run(v.name, func(t *testing.T) {
			testkit.Begin(t)
			wakeups(t, v.roles, 6)
		})
	}
}

// submitPaced submits rounds tasks as role, each after a server-side
// pause of 0.9-1.1 s, on a connection of its own.
func submitPaced(t *testing.T, role, marker string, rounds int, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	conn, err := testkit.Cluster.Connect(context.Background(), testkit.DBName, role)
	if err != nil {
		t.Errorf("connect: %v", err)
		return
	}
	defer conn.Close(context.Background())
	for range rounds {
		if _, err := conn.Exec(context.Background(), fmt.Sprintf(`
			SELECT lantern.async_task(format('INSERT INTO %s VALUES (clock_timestamp() - %%L::timestamptz)', clock_timestamp()))
			FROM pg_sleep(0.9 + random() * 0.2)`, marker)); err != nil {
			t.Errorf("submit: %v", err)
			return
		}
	}
}

func wakeups(t *testing.T, nroles, rounds int) {
	su := testkit.Connect(t, testkit.Superuser)
	marker := testkit.Ident(t, testkit.Uniq("wake"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s (delay interval)", marker))
	t.Cleanup(func() { testkit.CleanupExec(t, "DROP TABLE IF EXISTS "+marker) })
	var roles []string
	for range nroles {
		r := testkit.NewTempRole(t, su, "wake")
		testkit.MustExec(t, su, fmt.Sprintf("GRANT INSERT ON %s TO %s", marker, r))
		roles = append(roles, r)
	}
	done := make(chan struct{}, nroles)
	for _, r := range roles {
		go submitPaced(t, r, marker, rounds, done)
	}
	for range roles {
		<-done
	}
	testkit.RequirePoll(t, testkit.WaitTimeout, "every task to finish", testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int64](su, "SELECT jobid FROM lantern.tasks WHERE username = ANY($1) AND status IN ('pending', 'running')", roles)
		return err == nil && len(n) == 0, fmt.Sprintf("%d unfinished, err=%v", len(n), err)
	}))
	succeeded := testkit.QueryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = ANY($1) AND status = 'succeeded'", roles)
	delays := testkit.QueryAll[float64](t, su, fmt.Sprintf("SELECT extract(epoch FROM delay)::float8 * 1000 FROM %s ORDER BY 1", marker))
	require.Len(t, delays, nroles*rounds, "each task ran once")
	require.Equal(t, nroles*rounds, succeeded, "every task succeeded")
	t.Logf("%d delays from submit to run: median %.0f ms, max %.0f ms",
		len(delays), delays[len(delays)/2], delays[len(delays)-1])
	require.Less(t, delays[len(delays)-1], float64(testkit.HandoffBound.Milliseconds()),
		"a task waited for a timer (idle timeout %v, launcher nap 10 s), not a wake-up", testkit.SlowIdleTimeout)
}
