// Package cancel tests lantern.cancel_task() and
// lantern.cancel_all_async_tasks(): what they stop, what they return, and the
// locks they take and leave. It runs against its own real PostgreSQL server
// with lantern_async preloaded (tests/internal/testkit.Run); see
// tests/README.md.
package cancel

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
