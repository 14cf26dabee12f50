// Package security tests identity and privilege: tasks run as their
// submitter, nothing escalates, the extension binds nothing by name, and no
// role can freeze or hijack another's queue. It runs against its own real
// PostgreSQL server with lantern_async preloaded
// (tests/internal/testkit.Run); see tests/README.md.
package security

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
