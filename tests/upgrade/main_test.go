// Package upgrade tests ALTER EXTENSION UPDATE from every earlier version,
// with tasks queued. It runs against its own real PostgreSQL server with
// lantern_async preloaded (tests/internal/testkit.Run); see tests/README.md.
package upgrade

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
