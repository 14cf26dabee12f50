package tests

import (
	"fmt"
	"sync"
	"testing"
)

// The PostgreSQL versions the suite runs on (15 locally, 17 and 18 with the
// docker backend) differ in a few behaviours the tests check.

var serverVersion struct {
	sync.Mutex
	num int
}

// serverVersionNum returns the shared cluster's server_version_num
// (170004 for 17.4), read once.
func serverVersionNum(t *testing.T) int {
	t.Helper()
	serverVersion.Lock()
	defer serverVersion.Unlock()
	if serverVersion.num == 0 {
		serverVersion.num = queryOne[int](t, connect(t, superuser), "SELECT current_setting('server_version_num')::int")
		t.Logf("server_version_num %d", serverVersion.num)
	}
	return serverVersion.num
}

// workerNeedsLogin is la_compat.h's LA_WORKER_NEEDS_LOGIN: from 17 a worker
// logs in with BGWORKER_BYPASS_ROLELOGINCHECK, so a role without LOGIN can
// submit and its tasks run; on 15 it is refused at submit, and a role that
// loses LOGIN gets its pending tasks failed.
func workerNeedsLogin(t *testing.T) bool {
	t.Helper()
	return serverVersionNum(t) < 170000
}

// ranAsSQL is a task query that fails unless it runs with session_user and
// current_user role.
func ranAsSQL(role string) string {
	return fmt.Sprintf(`DO $$BEGIN IF session_user <> %[1]s OR current_user <> %[1]s THEN
		RAISE EXCEPTION 'ran as session_user %%, current_user %%', session_user, current_user; END IF; END$$`, lit(role))
}
