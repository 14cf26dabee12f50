// Package standby tests a hot standby (tasks and wait_task refused there) and
// a failover (queued tasks run once). It runs against its own real PostgreSQL
// server with lantern_async preloaded (tests/internal/testkit.Run); see
// tests/README.md.
package standby

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
