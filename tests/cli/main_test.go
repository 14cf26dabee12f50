// Package cli tests the lantern-async client command against a real server.
// It runs against its own real PostgreSQL server with lantern_async preloaded
// (tests/internal/testkit.Run); see tests/README.md.
package cli

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
