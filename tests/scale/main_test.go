// Package scale tests what many databases cost: no process stays connected
// to an idle one, the start sweep scouts each once, and a task in any of
// them still starts at once. Each test makes its databases in a cluster of
// its own; the package's cluster (tests/internal/testkit.Run) serves as a
// check of health between tests; see tests/README.md.
package scale

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
