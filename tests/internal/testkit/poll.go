package testkit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
)

// Polling: waiting for an asynchronous outcome without time.Sleep.

// Guarded wraps cond for assert.Eventually and assert.Never so that it never
// runs after the wait returned (testify may leave one evaluation in flight
// on timeout, which would then race with the caller on the same pgx
// connection). The wait must call stop when it returns; stop reports the
// description of what cond saw last.
func Guarded(cond func() (bool, string)) (check func() bool, stop func() (last string)) {
	var (
		mu   sync.Mutex
		done bool
		last string
	)
	check = func() bool {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return false
		}
		var met bool
		met, last = cond()
		return met
	}
	stop = func() string {
		mu.Lock()
		defer mu.Unlock()
		done = true
		return last
	}
	return check, stop
}

// Poll waits until cond is met (with the in-flight guard of guarded). The
// condition also returns a description of what it saw, reported on timeout.
// A condition that stopped because its connection died (ConnLost, see
// WhileConnected) was not met: poll then fails the test and returns false.
func Poll(t *testing.T, waitFor time.Duration, cond func() (bool, string), msgAndArgs ...any) (bool, string) {
	t.Helper()
	check, stop := Guarded(cond)
	ok := assert.Eventually(t, check, waitFor, Tick, msgAndArgs...)
	last := stop()
	if ok && last == ConnLost {
		assert.Fail(t, ConnLost, msgAndArgs...)
		ok = false
	}
	return ok, last
}

// Never asserts cond stays false for d (with the in-flight guard of guarded).
func Never(t *testing.T, d time.Duration, cond func() (bool, string), what string) bool {
	t.Helper()
	check, stop := Guarded(cond)
	ok := assert.Never(t, check, d, Tick, what)
	if last := stop(); !ok {
		t.Errorf("%s: observed %s", what, last)
	}
	return ok
}

// ConnLost is what a polling condition reports (with true, to stop
// polling) when its connection died, e.g. because the server crashed.
const ConnLost = "connection closed: the server crashed or restarted (see the server log)"

// WhileConnected makes a polling condition that queries conn stop early,
// reporting ConnLost, once conn died. That stop is not the condition met:
// poll and RequirePoll fail the test on it, and never fails on it too.
func WhileConnected(conn *pgx.Conn, cond func() (bool, string)) func() (bool, string) {
	return func() (bool, string) {
		if conn.IsClosed() {
			return true, ConnLost
		}
		return cond()
	}
}

// RequirePoll is poll that stops the test on timeout or when the condition
// reported ConnLost.
func RequirePoll(t *testing.T, waitFor time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ok, last := Poll(t, waitFor, cond, what)
	if last == ConnLost {
		t.Fatalf("while waiting for %s: %s", what, ConnLost)
	}
	if !ok {
		t.Fatalf("timed out after %s waiting for %s; last observation: %s", waitFor, what, last)
	}
}

// RowsLeft is a polling condition on conn: SELECT count(*) FROM
// fromWhere (args its parameters) is want.
func RowsLeft(conn *pgx.Conn, want int64, fromWhere string, args ...any) func() (bool, string) {
	return WhileConnected(conn, func() (bool, string) {
		var n int64
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+fromWhere, args...).Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == want, fmt.Sprintf("%d rows in %s", n, fromWhere)
	})
}

// NewSessionShows is a polling condition: a new superuser session of
// database DBName shows setting name as want (after ALTER SYSTEM and a
// reload, which backends apply at their next command).
func NewSessionShows(name, want string) func() (bool, string) {
	return func() (bool, string) {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := Cluster.Connect(c, DBName, Superuser)
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close(context.Background())
		var shown string
		if err := conn.QueryRow(c, "SELECT current_setting($1)", name).Scan(&shown); err != nil {
			return false, err.Error()
		}
		return shown == want, fmt.Sprintf("%s = %s", name, shown)
	}
}

// Reconnecting turns cond into a polling condition that runs it on a
// superuser connection of its own, opened again whenever the last one
// failed (the server may be restarting, e.g. during crash recovery).
// CloseConn must be called once polling is over.
func Reconnecting(cond func(conn *pgx.Conn) (bool, string, error)) (_ func() (bool, string), closeConn func()) {
	return ReconnectingTo(Cluster, cond)
}
