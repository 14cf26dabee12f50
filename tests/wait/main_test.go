// Package wait tests lantern.wait_task(): what it returns, what it commits,
// and what wakes it. It runs against its own real PostgreSQL server with
// lantern_async preloaded (tests/internal/testkit.Run); see tests/README.md.
package wait

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
