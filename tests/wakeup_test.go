package tests

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNoLostWakeups: several roles each submit one task about every
// second (the delay is in the submitting statement, on the server), so
// commits land at every phase of their workers' 1 s idle wait. Each task
// records how long after its submit it ran: that must stay far below the
// launcher's 1 s fallback naptime (a lost wake-up shows as ~1 s). With
// more roles than slots, idle workers must also give way promptly.
func TestNoLostWakeups(t *testing.T) {
	begin(t)
	for _, v := range []struct {
		name  string
		roles int
	}{{"as many roles as slots", cluster.MaxWorkers()}, {"twice as many roles as slots", 2 * cluster.MaxWorkers()}} {
		t.Run(v.name, func(t *testing.T) {
			begin(t)
			wakeups(t, v.roles, 6)
		})
	}
}

// submitPaced submits rounds tasks as role, each after a server-side
// pause of 0.9-1.1 s, on a connection of its own.
func submitPaced(t *testing.T, role, marker string, rounds int, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	conn, err := cluster.Connect(context.Background(), dbName, role)
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
	su := connect(t, superuser)
	marker := ident(t, uniq("wake"))
	mustExec(t, su, fmt.Sprintf("CREATE TABLE %s (delay interval)", marker))
	t.Cleanup(func() { cleanupExec(t, "DROP TABLE IF EXISTS "+marker) })
	var roles []string
	for range nroles {
		r := newTempRole(t, su, "wake")
		mustExec(t, su, fmt.Sprintf("GRANT INSERT ON %s TO %s", marker, r))
		roles = append(roles, r)
	}
	done := make(chan struct{}, nroles)
	for _, r := range roles {
		go submitPaced(t, r, marker, rounds, done)
	}
	for range roles {
		<-done
	}
	requirePoll(t, waitTimeout, "every task to finish", whileConnected(su, func() (bool, string) {
		n, err := queryRows[int64](su, "SELECT jobid FROM lantern.tasks WHERE username = ANY($1) AND status IN ('pending', 'running')", roles)
		return err == nil && len(n) == 0, fmt.Sprintf("%d unfinished, err=%v", len(n), err)
	}))
	succeeded := queryOne[int](t, su, "SELECT count(*)::int FROM lantern.tasks WHERE username = ANY($1) AND status = 'succeeded'", roles)
	delays := queryAll[float64](t, su, fmt.Sprintf("SELECT extract(epoch FROM delay)::float8 * 1000 FROM %s ORDER BY 1", marker))
	require.Len(t, delays, nroles*rounds, "each task ran once")
	require.Equal(t, nroles*rounds, succeeded, "every task succeeded")
	t.Logf("%d delays from submit to run: median %.0f ms, max %.0f ms",
		len(delays), delays[len(delays)/2], delays[len(delays)-1])
	require.Less(t, delays[len(delays)-1], 500.0, "a task waited over 500 ms for a worker (lost wake-up?)")
}
