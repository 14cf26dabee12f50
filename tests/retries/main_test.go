// Package retries tests tasks submitted with retries: a transient failure
// (serialization failure, deadlock, lock not available) is tried again
// after a backoff, only while none of the task's transactions has
// committed, each attempt is recorded in lantern.task_attempts, and a
// cancel or a timeout stops the retries. It runs against its own real
// PostgreSQL server with lantern_async preloaded (tests/internal/testkit.Run);
// see tests/README.md.
package retries

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
