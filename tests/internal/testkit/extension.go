package testkit

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func DropExtension(t *testing.T, su *pgx.Conn) {
	t.Helper()
	start := time.Now()
	MustExec(t, su, "DROP EXTENSION lantern_async")
	t.Logf("DROP EXTENSION took %s", time.Since(start).Round(time.Millisecond))
	require.False(t, QueryOne[bool](t, su, "SELECT to_regclass('lantern.tasks') IS NOT NULL"))
}

func CreateExtension(t *testing.T, su *pgx.Conn) {
	t.Helper()
	MustExec(t, su, "CREATE EXTENSION lantern_async")
	require.NoError(t, GrantExtensionAccess(Ctx(t), su))
}
