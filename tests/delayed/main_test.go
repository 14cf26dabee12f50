// Package delayed tests tasks that wait for their time (async_task's
// run_after): they start at it, not before and not on a polling tick,
// survive a restart, can be canceled while they wait, and cost nothing
// meanwhile. It runs against its own real PostgreSQL server with
// lantern_async preloaded (tests/internal/testkit.Run); see
// tests/README.md.
package delayed

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
