// Package databases tests tasks in many databases: first tasks,
// CREATE/DROP/ALTER DATABASE with workers about, copies, the allow list, and
// a cluster without the preload. It runs against its own real
// PostgreSQL server with lantern_async preloaded
// (tests/internal/testkit.Run); see tests/README.md.
package databases

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
