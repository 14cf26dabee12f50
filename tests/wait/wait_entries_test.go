package wait

import (
	"context"
	"encoding/binary"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lantern.wait_task() keeps one entry per waiting backend in shared memory,
// and a count of the entries in use: a commit that finishes tasks scans the
// entries only when the count is above 0. Every settle tells the count at
// DEBUG2 ("waiters registered: N"), which a session with
// client_min_messages = debug2 receives for the settles it makes itself
// (cancel_task() of a pending task settles it in the caller's backend).

var waitersRegisteredRe = regexp.MustCompile(`^lantern_async: task (\d+) got its final status; waiters registered: (\d+)$`)

// settleCounter is a superuser session that cancels pending tasks and reads
// the waiter count its settles report.
type settleCounter struct {
	conn    *pgx.Conn
	mu      sync.Mutex
	notices []string
}

func newSettleCounter(t *testing.T) *settleCounter {
	t.Helper()
	sc := &settleCounter{}
	cfg, err := pgx.ParseConfig(testkit.Cluster.DSN(testkit.DBName, testkit.Superuser))
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		sc.notices = append(sc.notices, n.Message)
	}
	sc.conn, err = pgx.ConnectConfig(testkit.Ctx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.conn.Close(context.Background()) })
	testkit.MustExec(t, sc.conn, "SET client_min_messages = debug2")
	return sc
}

// registeredAt cancels the pending task jobid and returns how many waiters
// were registered in the server when its cancel settled it.
func (sc *settleCounter) registeredAt(t *testing.T, jobid int64) int {
	t.Helper()
	sc.mu.Lock()
	sc.notices = nil
	sc.mu.Unlock()
	testkit.RequireCancelTask(t, sc.conn, jobid, true)
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var counts []int
	for _, n := range sc.notices {
		if m := waitersRegisteredRe.FindStringSubmatch(n); m != nil && m[1] == strconv.FormatInt(jobid, 10) {
			c, err := strconv.Atoi(m[2])
			require.NoError(t, err)
			counts = append(counts, c)
		}
	}
	require.Len(t, counts, 1, "one settle of task %d reported at DEBUG2; notices: %q", jobid, sc.notices)
	return counts[0]
}

// waiterPid is the pid of the one backend sleeping in wait_task.
func waiterPid(t *testing.T, su *pgx.Conn) int {
	t.Helper()
	return testkit.QueryOne[int](t, su, `SELECT pid FROM pg_stat_activity
		WHERE query LIKE 'CALL lantern.wait_task%' AND wait_event = 'Extension'`)
}

// Every way a wait ends gives its entry back, so that with nobody waiting
// a settle scans nothing: a wait for jobid 0 (which counted an entry and
// never gave it back), a waiter ended by pg_terminate_backend (a FATAL
// skips PG_FINALLY), by its statement_timeout (an ERROR), or by its task.
func TestWaitTaskLeavesNoWaiterEntryBehind(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	sc := newSettleCounter(t)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	pending := func() int64 { return testkit.Submit(t, su, "SELECT 1") } // stays pending: every slot is blocked
	assert.Equal(t, 0, sc.registeredAt(t, pending()), "nobody waits at the start")

	for range 3 {
		require.Equal(t, "", waitStatus(t, su, 0, "0"), "no task 0")
	}
	assert.Equal(t, 0, sc.registeredAt(t, pending()), "after three waits for jobid 0")

	// A live waiter counts, and the count is exact.
	awaited := pending()
	done := startWaiter(t, su, awaited, "1 min")
	pid := waiterPid(t, su)
	assert.Equal(t, 1, sc.registeredAt(t, pending()), "one waiter sleeps")
	require.True(t, testkit.QueryOne[bool](t, su, "SELECT pg_terminate_backend($1)", pid))
	r := waitResultOf(t, done)
	require.True(t, strings.HasPrefix(r.status, "error: "), "the waiter was terminated: %s", r.status)
	testkit.RequirePoll(t, testkit.WaitTimeout, fmt.Sprintf("waiter %d gone", pid), testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE pid = $1", pid)
		return err == nil && len(n) == 0, fmt.Sprintf("%v %v", n, err)
	}))
	assert.Equal(t, 0, sc.registeredAt(t, pending()), "after a waiter was terminated")

	timedOut := testkit.Connect(t, testkit.Superuser)
	testkit.MustExec(t, timedOut, "SET statement_timeout = '300ms'")
	_, err := timedOut.Exec(testkit.Ctx(t), "CALL lantern.wait_task($1, '1 min', NULL)", awaited)
	testkit.RequirePgError(t, err, "57014", "the waiter's statement_timeout")
	assert.Equal(t, 0, sc.registeredAt(t, pending()), "after a waiter's statement_timeout")

	done = startWaiter(t, su, awaited, "1 min")
	assert.Equal(t, 1, sc.registeredAt(t, awaited), "the waiter of the task being canceled")
	require.Equal(t, "canceled", waitResultOf(t, done).status)
	assert.Equal(t, 0, sc.registeredAt(t, pending()), "after a waiter got its status")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}

// A waiter whose client has gone (a serverless function killed at its time
// limit, a dropped connection) ends at once, with its entry, instead of
// waiting with no limit for a task that may run for hours: the sleep also
// watches the client's socket.
func TestWaitTaskEndsWhenItsClientHasGone(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	sc := newSettleCounter(t)
	lock := testkit.HoldAdvisoryLock(t)
	blockers := lock.BlockWorkers(t, su, testkit.Cluster.MaxWorkers())
	awaited := testkit.Submit(t, su, "SELECT 1")

	waiter := testkit.Connect(t, testkit.Superuser)
	pid := testkit.QueryOne[int](t, waiter, "SELECT pg_backend_pid()")
	// The CALL as a bare protocol message: pgx, which would send a cancel
	// request when its socket fails, never learns of it.
	raw := waiter.PgConn().Conn()
	query := fmt.Sprintf("CALL lantern.wait_task(%d, NULL, NULL)\x00", awaited)
	msg := binary.BigEndian.AppendUint32([]byte{'Q'}, uint32(4+len(query)))
	_, err := raw.Write(append(msg, query...))
	require.NoError(t, err)
	testkit.RequirePoll(t, testkit.WaitTimeout, "the waiter sleeps", testkit.WhileConnected(su, func() (bool, string) {
		ev, err := testkit.QueryRows[string](su, "SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1", pid)
		return err == nil && len(ev) == 1 && ev[0] == "Extension", fmt.Sprintf("%v %v", ev, err)
	}))
	require.NoError(t, raw.Close(), "drop the client's socket, with no goodbye nor cancel request")
	gone := time.Now()
	testkit.RequirePoll(t, 5*time.Second, fmt.Sprintf("waiter %d ends (its recheck would be 10 s away)", pid), testkit.WhileConnected(su, func() (bool, string) {
		n, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE pid = $1", pid)
		return err == nil && len(n) == 0, fmt.Sprintf("%v %v", n, err)
	}))
	t.Logf("the waiter %d ended %v after its client went", pid, time.Since(gone).Round(time.Millisecond))
	require.Equal(t, 0, sc.registeredAt(t, awaited), "its entry was given back")

	lock.Release(t)
	testkit.RequireSucceeded(t, su, blockers...)
}
