// Package tests holds the lantern_async integration tests. They run against a
// real PostgreSQL 15 server with the extension preloaded; see
// tests/internal/pgcluster for the harness and README.md for how to run them.
package tests

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
)

const (
	// dbName is the database named by lantern_async.database.
	dbName = "postgres"
	// superuser is the bootstrap superuser created by initdb -U postgres.
	superuser = "postgres"
)

// envDebugLog, when set, makes the shared cluster log at debug1 (every
// process start and exit, the workers' costs): for finding out why a test
// failed, not for normal runs (a few tests count log lines).
const envDebugLog = "LANTERN_ASYNC_TEST_DEBUG_LOG"

// envLong runs the slowest tests on the docker backend too (see tests/README.md).
const envLong = "LANTERN_ASYNC_TEST_LONG"

// Login roles used by the tests, created once in TestMain.
var testRoles = []string{"alice", "bob", "carol"}

// cluster is the one server shared by every test of the package.
var cluster *pgcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	backend := os.Getenv(pgcluster.EnvBackend)
	if backend == "" || backend == pgcluster.BackendLocal {
		if err := checkInstalled(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			return 1
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	opts := pgcluster.Options{Logf: log.Printf}
	if os.Getenv(envDebugLog) != "" {
		opts.ExtraConf = append(opts.ExtraConf, "log_min_messages = debug1")
	}
	c, err := pgcluster.Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the test cluster: %v\n", err)
		return 1
	}
	cluster = c
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "warning: closing the test cluster: %v\n", err)
		}
	}()

	if err := setupCluster(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cluster setup: %v\n--- server log (tail) ---\n%s\n", err, c.LogTail(80))
		return 1
	}
	return m.Run()
}

// checkInstalled verifies that `make install` has put the extension where
// the local server will look for it.
func checkInstalled() error {
	pkglib, err := pgcluster.PGConfig("pkglibdir")
	if err != nil {
		return err
	}
	share, err := pgcluster.PGConfig("sharedir")
	if err != nil {
		return err
	}
	var missing []string
	for _, f := range []string{
		filepath.Join(pkglib, "lantern_async.so"),
		filepath.Join(share, "extension", "lantern_async.control"),
	} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if _, err := os.Stat(filepath.Join(pkglib, "lantern_async_go.so")); err != nil && len(missing) == 0 {
		log.Printf("warning: %s not found; the background worker may fail to load its Go library",
			filepath.Join(pkglib, "lantern_async_go.so"))
	}
	if len(missing) > 0 {
		return fmt.Errorf("the lantern_async extension is not installed (missing %s).\n"+
			"Run `make install` in the repository root first (`make test` does it for you),\n"+
			"or use %s=docker to build it in a container",
			strings.Join(missing, ", "), pgcluster.EnvBackend)
	}
	return nil
}

// setupCluster creates the extension and the test roles.
func setupCluster(ctx context.Context) error {
	conn, err := cluster.Connect(ctx, dbName, superuser)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	if _, err := conn.Exec(ctx, "CREATE EXTENSION lantern_async"); err != nil {
		return fmt.Errorf("CREATE EXTENSION lantern_async: %w", err)
	}
	for _, r := range testRoles {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN", r)); err != nil {
			return fmt.Errorf("create role %s: %w", r, err)
		}
	}
	if _, err := conn.Exec(ctx, "GRANT CREATE ON SCHEMA public TO "+strings.Join(testRoles, ", ")); err != nil {
		return err
	}
	// A failure here (e.g. a missing function) is only logged: the structure
	// tests pinpoint it.
	if err := grantExtensionAccess(ctx, conn); err != nil {
		log.Printf("warning: %v", err)
	}
	return nil
}

// grantExtensionAccess grants the test roles the use of the extension's
// objects. The extension is expected to grant these to PUBLIC already;
// granting again is harmless. A test that re-creates the extension calls it
// again.
func grantExtensionAccess(ctx context.Context, conn *pgx.Conn) error {
	roles := strings.Join(testRoles, ", ")
	var errs []error
	for _, g := range []string{
		"GRANT USAGE ON SCHEMA lantern TO " + roles,
		"GRANT EXECUTE ON FUNCTION lantern.async_task(text), lantern.async_task(text, text) TO " + roles,
		"GRANT SELECT ON lantern.tasks TO " + roles,
	} {
		if _, err := conn.Exec(ctx, g); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", g, err))
		}
	}
	return errors.Join(errs...)
}
