// Package timeouts tests statement, lock, task and transaction timeouts, and
// the role and database settings a task sees. It runs against its own real
// PostgreSQL server with lantern_async preloaded
// (tests/internal/testkit.Run); see tests/README.md.
package timeouts

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
