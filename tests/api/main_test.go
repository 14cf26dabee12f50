// Package api tests the SQL contract: the tables and functions, a task's life
// from submit to outcome, what a task's query may be and how its transactions
// behave, and progress. It runs against its own real PostgreSQL server with
// lantern_async preloaded (tests/internal/testkit.Run); see tests/README.md.
package api

import (
	"os"
	"testing"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
