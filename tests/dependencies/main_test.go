// Package dependencies tests tasks that wait for others (async_task's
// depends_on): a task starts only after every task it names succeeded,
// fails naming the one that failed, was canceled or is gone, is never
// stranded by a dependency that ends while it is being submitted, may name
// only tasks its role can see in this database, and costs nothing while it
// waits. It runs against its own real PostgreSQL server with lantern_async
// preloaded (tests/internal/testkit.Run); see tests/README.md.
package dependencies

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
