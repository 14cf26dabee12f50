package testkit

import (
	"fmt"
	"sync"
	"testing"
)

// The PostgreSQL versions the suite runs on (15 locally, 17 and 18 with the
// docker backend) differ in a few behaviours the tests check.

var ServerVersion struct {
	sync.Mutex
	num int
}

// ServerVersionNum returns the shared cluster's server_version_num
// (170004 for 17.4), read once.
func ServerVersionNum(t *testing.T) int {
	t.Helper()
	ServerVersion.Lock()
	defer ServerVersion.Unlock()
	if ServerVersion.num == 0 {
		ServerVersion.num = QueryOne[int](t, Connect(t, Superuser), "SELECT current_setting('server_version_num')::int")
		t.Logf("server_version_num %d", ServerVersion.num)
	}
	return ServerVersion.num
}

// WorkerNeedsLogin is la_compat.h's LA_WORKER_NEEDS_LOGIN: from 17 a worker
// logs in with BGWORKER_BYPASS_ROLELOGINCHECK, so a role without LOGIN can
// submit and its tasks run; on 15 it is refused at submit, and a role that
// loses LOGIN gets its pending tasks failed.
func WorkerNeedsLogin(t *testing.T) bool {
	t.Helper()
	return ServerVersionNum(t) < 170000
}

// RanAsSQL is a task query that fails unless it runs with session_user and
// current_user role.
func RanAsSQL(role string) string {
	return fmt.Sprintf(`DO $$BEGIN IF session_user <> %[1]s OR current_user <> %[1]s THEN
		RAISE EXCEPTION 'ran as session_user %%, current_user %%', session_user, current_user; END IF; END$$`, Lit(role))
}
