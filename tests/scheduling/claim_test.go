package scheduling

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Claiming is atomic: many sessions submit at once while max_workers
// workers race to claim, and every task runs exactly once.
//
// Start order within a role with several workers is not re-tested here:
// TestDispatchOrderFIFO (concurrency_test.go) already checks with all 4
// workers serving one role that no task leaves 'pending' while an earlier
// one is still pending, and TestTasksStartInJobidOrder the exact order
// through one worker. With concurrent submitters jobid order is not commit
// order, so the mixed-submitter test below cannot check order.

// submitter describes how one goroutine submits its tasks.
type submitter struct {
	role string
	// batch > 1: submit in explicit transactions of batch tasks each.
	batch int
	// rollback: also submit one task in a transaction that is rolled back;
	// it must never run.
	rollback bool
}

// submitResult is what one submitting goroutine did.
type submitResult struct {
	ids        []int64
	keys       []string
	rolledBack []string // keys whose submission was rolled back
	err        error
}

// submitConcurrently starts the submitters at the same time, each on a
// connection of its own, and collects what they submitted.
func submitConcurrently(t *testing.T, tbl string, subs []submitter, perSession int) (ids []int64, keys, rolledBack []string) {
	t.Helper()
	// Connect first, so that the submissions themselves overlap.
	conns := make([]*pgx.Conn, len(subs))
	for i, s := range subs {
		conns[i] = testkit.Connect(t, s.role)
	}
	results := make([]submitResult, len(subs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[g] = runSubmitter(conns[g], tbl, g, s, perSession)
		}()
	}
	close(start)
	wg.Wait()
	for g, r := range results {
		require.NoError(t, r.err, "submitter %d (%+v)", g, subs[g])
		ids = append(ids, r.ids...)
		keys = append(keys, r.keys...)
		rolledBack = append(rolledBack, r.rolledBack...)
	}
	return ids, keys, rolledBack
}

func claimTaskQuery(tbl, key string) string {
	// The short sleep keeps each worker busy long enough for several
	// workers to be claiming from the same queue at once.
	return fmt.Sprintf("INSERT INTO %s(task_key) VALUES (%s); SELECT pg_sleep(0.01)", tbl, testkit.Lit(key))
}

// runSubmitter submits perSession tasks on conn; it runs in its own
// goroutine, so it returns errors instead of failing the test.
func runSubmitter(conn *pgx.Conn, tbl string, g int, s submitter, perSession int) (r submitResult) {
	c, cancel := context.WithTimeout(context.Background(), 2*testkit.WaitTimeout)
	defer cancel()
	for i := 0; i < perSession; {
		n := max(s.batch, 1)
		n = min(n, perSession-i)
		var keys []string
		for j := range n {
			keys = append(keys, fmt.Sprintf("s%02d_t%03d", g, i+j))
		}
		var ids []int64
		if n == 1 {
			id, err := submitClaimTask(c, conn, tbl, keys[0])
			if err != nil {
				r.err = fmt.Errorf("submit %s: %w", keys[0], err)
				return r
			}
			ids = []int64{id}
		} else if ids, r.err = submitClaimBatch(c, conn, tbl, keys); r.err != nil {
			return r
		}
		r.ids, r.keys = append(r.ids, ids...), append(r.keys, keys...)
		i += n
		if n > 1 && s.rollback && i == n { // once, after the first batch
			key := fmt.Sprintf("s%02d_rolledback", g)
			if r.err = submitClaimRolledBack(c, conn, tbl, key); r.err != nil {
				return r
			}
			r.rolledBack = append(r.rolledBack, key)
		}
	}
	return r
}

// submitClaimTask submits the task of key (see claimTaskQuery) through q.
func submitClaimTask(c context.Context, q testkit.QueryRower, tbl, key string) (int64, error) {
	var id int64
	err := q.QueryRow(c, "SELECT lantern.async_task($1, $2)", claimTaskQuery(tbl, key), key).Scan(&id)
	return id, err
}

// submitClaimBatch submits the tasks of keys in one transaction on conn.
func submitClaimBatch(c context.Context, conn *pgx.Conn, tbl string, keys []string) ([]int64, error) {
	tx, err := conn.Begin(c)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, key := range keys {
		id, err := submitClaimTask(c, tx, tbl, key)
		if err != nil {
			_ = tx.Rollback(c)
			return nil, fmt.Errorf("submit %s: %w", key, err)
		}
		ids = append(ids, id)
	}
	if err := tx.Commit(c); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return ids, nil
}

// submitClaimRolledBack submits the task of key in a transaction on conn
// that is then rolled back.
func submitClaimRolledBack(c context.Context, conn *pgx.Conn, tbl, key string) error {
	tx, err := conn.Begin(c)
	if err != nil {
		return err
	}
	if _, err := submitClaimTask(c, tx, tbl, key); err != nil {
		_ = tx.Rollback(c)
		return fmt.Errorf("submit %s: %w", key, err)
	}
	return tx.Rollback(c)
}

// waitAllCountingWorkers waits until every task of ids is final, recording
// the most worker processes seen at once, in total and for a single role.
func waitAllCountingWorkers(t *testing.T, su *pgx.Conn, ids []int64) (maxWorkers, maxWorkersOneRole int) {
	t.Helper()
	testkit.RequirePoll(t, 4*testkit.WaitTimeout, fmt.Sprintf("all %d tasks to finish", len(ids)), testkit.WhileConnected(su, func() (bool, string) {
		var total, perRole int
		if err := su.QueryRow(context.Background(), `
			SELECT coalesce(sum(n), 0)::int, coalesce(max(n), 0)::int FROM (
				SELECT usename, count(*) AS n FROM pg_stat_activity
				WHERE backend_type = $1 AND state = 'active' GROUP BY usename) w`,
			testkit.BackendWorker).Scan(&total, &perRole); err != nil {
			return false, err.Error()
		}
		maxWorkers, maxWorkersOneRole = max(maxWorkers, total), max(maxWorkersOneRole, perRole)
		var final, running, pending int
		if err := su.QueryRow(context.Background(), `
			SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'canceled'))::int,
			       count(*) FILTER (WHERE status = 'running')::int,
			       count(*) FILTER (WHERE status = 'pending')::int
			FROM lantern.tasks WHERE jobid = ANY($1)`, ids).Scan(&final, &running, &pending); err != nil {
			return false, err.Error()
		}
		return final == len(ids), fmt.Sprintf("%d final, %d running, %d pending of %d", final, running, pending, len(ids))
	}))
	return maxWorkers, maxWorkersOneRole
}

// claimCase is one TestClaimAtomicUnderConcurrentSubmit setup: sessions
// sessions of roles roles submit perSession tasks each.
type claimCase struct {
	name       string
	roles      int
	sessions   int
	perSession int
}

func TestClaimAtomicUnderConcurrentSubmit(t *testing.T) {
	cases := []claimCase{
		// 20 sessions of 3 roles, 300 tasks: workers of different roles and
		// of the same role claim at the same time.
		{"3 roles", 3, 20, 15},
		// One role: all workers compete for the same role's queue.
		{"1 role", 1, 20, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			testkit.Begin(t)
			su := testkit.Connect(t, testkit.Superuser)
			require.Equal(t, 4, testkit.Cluster.MaxWorkers(), "lantern_async.max_workers of the test cluster")
			tbl, roles, subs := claimSetup(t, su, tc)

			ids, keys, rolledBack := submitConcurrently(t, tbl, subs, tc.perSession)
			require.Len(t, ids, tc.sessions*tc.perSession)
			require.NotEmpty(t, rolledBack)
			sorted := slices.Clone(ids)
			slices.Sort(sorted)
			require.Len(t, slices.Compact(sorted), len(ids), "jobids are unique")

			maxWorkers, maxOneRole := waitAllCountingWorkers(t, su, ids)
			t.Logf("%d tasks; at most %d workers at once, at most %d for one role", len(ids), maxWorkers, maxOneRole)

			requireEachTaskRanOnce(t, su, tbl, ids, keys, rolledBack, roles)

			require.LessOrEqual(t, maxWorkers, testkit.Cluster.MaxWorkers(), "worker processes never exceed max_workers")
			require.GreaterOrEqual(t, maxWorkers, 2, "several workers were claiming at once")
			if tc.roles == 1 {
				require.GreaterOrEqual(t, maxOneRole, 2, "several workers of one role were claiming at once")
			}
			testkit.RequireNoOrphans(t, su)
		})
	}
}

// claimSetup creates the table the tasks insert their keys into, tc.roles
// fresh roles that may insert into it, and tc.sessions submitters over the
// roles (every second one in batches, every fourth also rolling back).
func claimSetup(t *testing.T, su *pgx.Conn, tc claimCase) (tbl string, roles []string, subs []submitter) {
	t.Helper()
	tbl = testkit.Ident(t, testkit.Uniq("claim_counts"))
	testkit.MustExec(t, su, fmt.Sprintf("CREATE TABLE %s(task_key text NOT NULL, who text NOT NULL DEFAULT current_user, pid int NOT NULL DEFAULT pg_backend_pid())", tbl))
	for range tc.roles {
		r := testkit.NewLoginRole(t, su, "claimer")
		testkit.MustExec(t, su, fmt.Sprintf("GRANT INSERT ON %s TO %s", tbl, r))
		roles = append(roles, r)
	}
	for g := range tc.sessions {
		s := submitter{role: roles[g%len(roles)]}
		if g%2 == 1 {
			s.batch = 5
			s.rollback = g%4 == 1
		}
		subs = append(subs, s)
	}
	return tbl, roles, subs
}

// requireEachTaskRanOnce asserts that every task of ids succeeded, that each
// submitted key was inserted exactly once (none run twice, none skipped, no
// rolled-back one), that the roles have no other rows, and that each task
// ran as the role that submitted it.
func requireEachTaskRanOnce(t *testing.T, su *pgx.Conn, tbl string, ids []int64, keys, rolledBack, roles []string) {
	t.Helper()
	// Every task succeeded.
	bad := testkit.QueryAll[string](t, su, `
		SELECT format('%s %s %s', jobid, coalesce(status, '<NULL>'), coalesce(error_message, ''))
		FROM lantern.tasks
		WHERE jobid = ANY($1) AND status IS DISTINCT FROM 'succeeded' ORDER BY jobid LIMIT 10`, ids)
	require.Empty(t, bad, "tasks that did not succeed (first 10)")

	// Each key exactly once: none run twice, none skipped.
	dups := testkit.QueryAll[string](t, su, fmt.Sprintf(`
		SELECT format('%%s x%%s', task_key, count(*)) FROM %s
		GROUP BY task_key HAVING count(*) > 1 ORDER BY task_key`, tbl))
	require.Empty(t, dups, "keys inserted more than once (tasks run twice)")
	got := testkit.QueryAll[string](t, su, fmt.Sprintf("SELECT DISTINCT task_key FROM %s", tbl))
	sort.Strings(got)
	want := slices.Clone(keys)
	sort.Strings(want)
	require.Equal(t, want, got, "the set of keys inserted is exactly the set of tasks submitted")
	for _, k := range rolledBack {
		require.NotContains(t, got, k, "a task whose submission was rolled back ran")
	}

	// Nothing else was queued for these roles: the tasks rows are
	// exactly the committed submissions.
	require.Equal(t, len(ids), testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE username = ANY($1)", roles))
	require.Equal(t, 0, testkit.QueryOne[int](t, su,
		"SELECT count(*)::int FROM lantern.tasks WHERE username = ANY($1) AND job_name = ANY($2)",
		roles, rolledBack), "no row for a rolled-back submission")

	// Each task ran in a session of the role that submitted it: a
	// worker never claims another role's task.
	wrongRole := testkit.QueryAll[string](t, su, fmt.Sprintf(`
		SELECT c.task_key || ' ran as ' || c.who || ', submitted by ' || t.username
		FROM %s c JOIN lantern.tasks t ON t.job_name = c.task_key AND t.jobid = ANY($1)
		WHERE c.who <> t.username ORDER BY 1 LIMIT 10`, tbl), ids)
	require.Empty(t, wrongRole)
}
