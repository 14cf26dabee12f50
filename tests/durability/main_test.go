// Package durability tests what survives: crashes, restarts, FATAL outcomes,
// prepared transactions, retention, and dropping the extension under load. It
// runs against its own real PostgreSQL server with lantern_async preloaded
// (tests/internal/testkit.Run); see tests/README.md.
package durability

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
