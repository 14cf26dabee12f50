package security

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// A lock request that one role queues on lantern.tasks makes every later
// lock request on it wait behind it, the RowExclusiveLock of every claim
// and outcome of that database included. PostgreSQL takes some locks
// before it checks the privilege (CREATE TRIGGER, a foreign key to the
// table), and a database owner may VACUUM FULL it. None of that may hold
// back another database's tasks: the workers there never wait for the
// lock, and one that cannot record its outcome gives its slot up.

// queuedLockBound is how long bob's task in another database may take to
// end while the lock request waits: the blocked database's workers park
// their outcomes after blockedGrace (1 s, cgo/main.go) at the latest, exit,
// and bob's worker starts (a fork and a login, 22 ms here). Before, it
// waited until the blocker let go.
const queuedLockBound = 8 * time.Second

// queuedLock is one way to queue a conflicting lock on lantern.tasks in
// db, behind the open transaction holder keeps (which wrote or read
// lantern.tasks). It starts the statement on conn and returns its result
// channel; wantErr is the SQLSTATE it ends with once the lock is free ("":
// none).
type queuedLock struct {
	name string
	// blocker makes the role that queues the lock (before the database, so
	// that it is dropped after it); prepare gives it what it needs in db.
	blocker func(t *testing.T, su *pgx.Conn) string
	prepare func(t *testing.T, su *pgx.Conn, db, role string)
	sql     string
	wantErr string
}

func queuedLocks() []queuedLock {
	alice := func(*testing.T, *pgx.Conn) string { return "alice" }
	return []queuedLock{
		{
			// ShareRowExclusiveLock, taken before the TRIGGER privilege is checked.
			name:    "create trigger",
			blocker: alice,
			prepare: func(*testing.T, *pgx.Conn, string, string) {},
			sql:     "CREATE TRIGGER lq BEFORE UPDATE ON lantern.tasks FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
			wantErr: "42501",
		},
		{
			// ShareRowExclusiveLock on the referenced table, taken before REFERENCES is checked.
			name:    "foreign key",
			blocker: alice,
			prepare: func(t *testing.T, su *pgx.Conn, db, role string) {
				c := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
				testkit.MustExec(t, c, "GRANT CREATE ON SCHEMA public TO "+role)
				testkit.CloseConn(t, c)
			},
			sql:     "CREATE TABLE lq_fk (j bigint REFERENCES lantern.tasks)",
			wantErr: "42501",
		},
		{
			// A database owner may VACUUM FULL every table of the database.
			name:    "vacuum full",
			blocker: func(t *testing.T, su *pgx.Conn) string { return testkit.NewTempRole(t, su, "lq_owner") },
			prepare: func(t *testing.T, su *pgx.Conn, db, role string) {
				ownDatabase(t, su, db, role)
				c := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
				require.NoError(t, grantRoleAccess(c, role))
				testkit.CloseConn(t, c)
			},
			sql: "VACUUM FULL lantern.tasks",
		},
	}
}

// ownDatabase gives db to role until the test ends (then the role can be dropped).
func ownDatabase(t *testing.T, su *pgx.Conn, db, role string) {
	t.Helper()
	testkit.MustExec(t, su, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", db, role))
	t.Cleanup(func() { testkit.CleanupExec(t, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", db, testkit.Superuser)) })
}

// grantRoleAccess gives role what testkit.GrantExtensionAccess gives the test roles.
func grantRoleAccess(conn *pgx.Conn, role string) error {
	_, err := conn.Exec(context.Background(), fmt.Sprintf("GRANT USAGE ON SCHEMA lantern TO %[1]s; "+
		"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lantern TO %[1]s; "+
		"GRANT SELECT ON lantern.tasks TO %[1]s", role))
	return err
}

// queuedRequest is a statement left waiting for its lock.
type queuedRequest struct {
	done chan error
	err  error
	over bool
}

// result waits for the statement to end and returns its error.
func (q *queuedRequest) result() error {
	if !q.over {
		q.err, q.over = <-q.done, true
	}
	return q.err
}

// startQueued runs sql on a connection of role's in db and waits until it
// waits for a lock.
func startQueued(t *testing.T, su *pgx.Conn, db, role, sql string) *queuedRequest {
	t.Helper()
	conn := testkit.ConnectTo(t, testkit.Cluster, db, role)
	pid := testkit.QueryOne[int](t, conn, "SELECT pg_backend_pid()")
	q := &queuedRequest{done: make(chan error, 1)}
	go func() {
		_, err := conn.Exec(context.Background(), sql)
		q.done <- err
	}()
	t.Cleanup(func() {
		if q.over {
			return
		}
		testkit.CleanupExec(t, fmt.Sprintf("SELECT pg_cancel_backend(%d)", pid))
		select {
		case <-q.done:
		case <-time.After(testkit.CleanupTimeout):
		}
	})
	testkit.RequirePoll(t, testkit.WaitTimeout, "the lock request waits: "+sql, testkit.WhileConnected(su, func() (bool, string) {
		w, err := testkit.QueryRows[string](su, "SELECT coalesce(wait_event_type, '') FROM pg_stat_activity WHERE pid = $1", pid)
		return err == nil && len(w) == 1 && w[0] == "Lock", fmt.Sprintf("%v %v", w, err)
	}))
	return q
}

// lockLines counts the server log lines since from that report the queue's
// table could not be locked.
func lockLines(from int) (all, errors int) {
	log := testkit.Cluster.Log()
	if len(log) < from {
		return 0, 0
	}
	for _, l := range strings.Split(log[from:], "\n") {
		if strings.Contains(l, "could not lock table") {
			all++
			if strings.Contains(l, "] ERROR:  could not lock table") {
				errors++
			}
		}
	}
	return all, errors
}

// TestQueuedLockFreezesNoOtherDatabase: with every slot busy with tasks of
// the blocked database, each its role's only worker (so none has finished a
// task the launcher could count), a conflicting lock request queued on
// lantern.tasks there behind an open transaction must not keep bob's task
// in database postgres from running; the workers do not flood the log
// while they cannot record; once the blocker lets go every task of the
// blocked database gets its real outcome, the one submitted in the open
// transaction included. Before: bob's task waited until the blocker let go
// (37 s in the report), and each blocked worker logged an ERROR every 100 ms.
func TestQueuedLockFreezesNoOtherDatabase(t *testing.T) {
	for _, q := range queuedLocks() {
		t.Run(strings.ReplaceAll(q.name, " ", "_"), func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			n := testkit.Cluster.MaxWorkers()
			var roles []string // before the database: dropped after it
			for i := range n {
				roles = append(roles, testkit.NewTempRole(t, su, fmt.Sprintf("lq_r%d", i)))
			}
			blocker := q.blocker(t, su)
			db := testkit.NewExtensionDatabase(t, su, "lq")
			q.prepare(t, su, db, blocker)
			dbsu := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)

			// Every slot: one task each of n roles, waiting on an advisory
			// lock (of db: they are per database) until the request is queued.
			adv := testkit.ConnectTo(t, testkit.Cluster, db, testkit.Superuser)
			key := 7_500_000 + testkit.NameCounter.Add(1)
			testkit.MustExec(t, adv, "SELECT pg_advisory_lock($1)", key)
			var ids []int64
			for _, r := range roles {
				require.NoError(t, grantRoleAccess(dbsu, r))
				rc := testkit.ConnectTo(t, testkit.Cluster, db, r)
				ids = append(ids, testkit.Submit(t, rc, fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d)", key)))
				testkit.CloseConn(t, rc)
			}
			testkit.RequirePoll(t, testkit.WaitTimeout, "the tasks all running, waiting on the advisory lock", testkit.WhileConnected(dbsu, func() (bool, string) {
				st, err := testkit.StatusesOf(dbsu, ids)
				waiting, werr := testkit.QueryRows[int64](dbsu, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
					AND NOT granted AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`, key)
				return err == nil && werr == nil && testkit.CountStatus(st, "running") == n && waiting[0] == int64(n),
					fmt.Sprintf("%v %v %v %v", st, err, waiting, werr)
			}))

			// The blocker's open transaction (a submit: RowExclusiveLock), and
			// its lock request; then the tasks end, and cannot record it.
			holder := testkit.ConnectTo(t, testkit.Cluster, db, blocker)
			h := testkit.BeginHeld(t, holder)
			held := testkit.Submit(t, holder, "SELECT 1")
			from := len(testkit.Cluster.Log())
			done := startQueued(t, su, db, blocker, q.sql)
			testkit.MustExec(t, adv, "SELECT pg_advisory_unlock($1)", key)

			bc := testkit.Connect(t, "bob")
			jobid := testkit.Submit(t, bc, "SELECT 1")
			start := time.Now()
			ok, last := testkit.Poll(t, queuedLockBound, testkit.WhileConnected(bc, func() (bool, string) {
				st, err := testkit.StatusesOf(bc, []int64{jobid})
				return err == nil && len(st) == 1 && testkit.IsFinal(st[0]), fmt.Sprintf("%v %v", st, err)
			}))
			require.True(t, ok, "bob's task in %s did not end within %v (%s) while %q waits in %s",
				testkit.DBName, time.Since(start).Round(time.Millisecond), last, q.sql, db)
			testkit.RequireSucceeded(t, bc, jobid)
			t.Logf("bob's task ended %v after its submit", time.Since(start).Round(time.Millisecond))

			// The blocked tasks ended their sleep a while ago: at most one
			// line each while they cannot record, and a few of the scout's.
			testkit.RequirePoll(t, testkit.WaitTimeout, "the blocked tasks' workers gone", testkit.WhileConnected(su, func() (bool, string) {
				pids, err := testkit.QueryRows[int](su, "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = $2",
					db, testkit.BackendWorker)
				return err == nil && len(pids) == 0, fmt.Sprintf("%v %v", pids, err)
			}))
			all, errs := lockLines(from)
			t.Logf("%d log lines about the locked table, %d of them ERRORs", all, errs)
			require.Zero(t, errs, "ERROR lines about the locked table in the log")
			require.LessOrEqual(t, all, 2*n+8, "log lines about the locked table")

			// The blocker lets go: its own task runs, and every blocked one gets its real outcome.
			h.End(t, "COMMIT")
			err := done.result()
			if q.wantErr == "" {
				require.NoError(t, err, q.sql)
			} else {
				testkit.RequirePgError(t, err, q.wantErr, q.sql)
			}
			testkit.RequireSucceeded(t, dbsu, append(ids, held)...)
		})
	}
}

// TestSubmitBehindQueuedLockKeepsItsOwnTimeouts: a submit behind a lock
// request queued on lantern.tasks waits as an INSERT into the table would,
// within the session's own lock_timeout (55P03) and statement_timeout
// (57014), and runs once the blocker lets go. Before, the submit's lock
// was taken with lock_timeout pinned to 0: it waited for as long as the
// blocker kept its transaction open (18.6 s in the report), whatever the
// session's lock_timeout.
func TestSubmitBehindQueuedLockKeepsItsOwnTimeouts(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	db := testkit.NewExtensionDatabase(t, su, "lq_submit")
	holder := testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	h := testkit.BeginHeld(t, holder)
	testkit.Submit(t, holder, "SELECT 1")
	done := startQueued(t, su, db, "alice", queuedLocks()[0].sql)
	t.Logf("queued at %v", time.Now())

	ac := testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	for _, c := range []struct{ set, code string }{
		{"SET lock_timeout = '300ms'", "55P03"},
		{"SET statement_timeout = '300ms'", "57014"},
	} {
		testkit.MustExec(t, ac, c.set)
		cc, cancel := context.WithTimeout(testkit.Ctx(t), 10*time.Second)
		start := time.Now()
		var id int64
		err := ac.QueryRow(cc, "SELECT lantern.async_task('SELECT 1')").Scan(&id)
		cancel()
		testkit.RequirePgError(t, err, c.code, "a submit behind a queued lock request, after %s (%v)", c.set, time.Since(start))
		testkit.MustExec(t, ac, "RESET ALL")
	}

	t.Logf("submits refused at %v", time.Now())
	h.End(t, "COMMIT")
	testkit.RequirePgError(t, done.result(), "42501")
	t.Logf("lock request ended at %v", time.Now())
	testkit.RequireSucceeded(t, ac, testkit.Submit(t, ac, "SELECT 1"))
}

// TestQueueLocksNeedPrivilegeFirst: the other commands that take a lock
// on lantern.tasks strong enough to stop a claim check the privilege
// before they lock (PostgreSQL's RangeVarGetRelidExtended callbacks), so
// a role without it gets 42501 at once even while a transaction holds
// the table, and queues nothing: LOCK TABLE in the modes that conflict
// with a claim, ALTER TABLE, TRUNCATE, CREATE INDEX, DROP TABLE, by an
// ordinary role and by the database's owner. (CREATE TRIGGER, a foreign
// key and a database owner's VACUUM FULL do queue:
// TestQueuedLockFreezesNoOtherDatabase.)
func TestQueueLocksNeedPrivilegeFirst(t *testing.T) {
	testkit.Begin(t)
	su := testkit.Connect(t, testkit.Superuser)
	owner := testkit.NewTempRole(t, su, "lq_dbowner")
	db := testkit.NewExtensionDatabase(t, su, "lq_priv")
	ownDatabase(t, su, db, owner)
	holder := testkit.ConnectTo(t, testkit.Cluster, db, "alice")
	h := testkit.BeginHeld(t, holder)
	testkit.Submit(t, holder, "SELECT 1")
	defer h.End(t, "ROLLBACK")

	for _, role := range []string{"alice", owner} {
		conn := testkit.ConnectTo(t, testkit.Cluster, db, role)
		// Were any of them to queue, the held transaction would keep it waiting until this.
		testkit.MustExec(t, conn, "SET statement_timeout = '10s'")
		for _, sql := range []string{
			"LOCK TABLE lantern.tasks IN SHARE MODE",
			"LOCK TABLE lantern.tasks IN SHARE ROW EXCLUSIVE MODE",
			"LOCK TABLE lantern.tasks IN EXCLUSIVE MODE",
			"LOCK TABLE lantern.tasks IN ACCESS EXCLUSIVE MODE",
			"ALTER TABLE lantern.tasks ADD COLUMN lq int",
			"ALTER TABLE lantern.tasks ALTER COLUMN status SET DEFAULT 'x'",
			"ALTER TABLE lantern.tasks DISABLE ROW LEVEL SECURITY",
			"ALTER TABLE lantern.task_owners ADD COLUMN lq int",
			"TRUNCATE lantern.tasks",
			"CREATE INDEX ON lantern.tasks (job_name)",
			"DROP TABLE lantern.tasks",
		} {
			testkit.MustExec(t, conn, "BEGIN") // LOCK TABLE needs a transaction block
			_, err := conn.Exec(testkit.Ctx(t), sql)
			testkit.MustExec(t, conn, "ROLLBACK")
			testkit.RequirePgError(t, err, "42501", "%s as %s", sql, role)
		}
		testkit.CloseConn(t, conn)
	}
}
