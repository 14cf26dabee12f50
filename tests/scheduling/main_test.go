// Package scheduling tests which task runs when: concurrency, FIFO and
// fairness across roles and databases, warm and idle workers, wake-ups, the
// claim, and worker slots. It runs against its own real PostgreSQL server
// with lantern_async preloaded (tests/internal/testkit.Run); see
// tests/README.md.
package scheduling

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
