// Package testkit is what the integration test packages under tests/ share:
// Run, which gives each package its own cluster (internal/pgcluster), and
// the helpers that connect, submit, poll, and look at tasks and processes.
package testkit

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
	// DBName is the database named by lantern_async.database.
	DBName = "postgres"
	// Superuser is the bootstrap superuser created by initdb -U postgres.
	Superuser = "postgres"
)

// EnvDebugLog, when set, makes the shared cluster log at debug1 (every
// process start and exit, the workers' costs): for finding out why a test
// failed, not for normal runs (a few tests count log lines).
const EnvDebugLog = "LANTERN_ASYNC_TEST_DEBUG_LOG"

// EnvLong runs the slowest tests on the docker backend too (see tests/README.md).
const EnvLong = "LANTERN_ASYNC_TEST_LONG"

// TestRoles are the login roles every package's cluster has, created by Run.
var TestRoles = []string{"alice", "bob", "carol"}

// Cluster is the one server shared by every test of the package running
// (each test package is its own process, with its own cluster).
var Cluster *pgcluster.Cluster

// Run starts the package's own throw-away cluster, creates the extension
// and the test roles in it, runs the package's tests and closes the cluster.
// Every test package's TestMain is os.Exit(testkit.Run(m)): packages run in
// parallel, and none sees another's processes, log lines or ALTER SYSTEM.
func Run(m *testing.M) int {
	backend := os.Getenv(pgcluster.EnvBackend)
	if backend == "" || backend == pgcluster.BackendLocal {
		if err := CheckInstalled(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			return 1
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	opts := pgcluster.Options{Logf: log.Printf}
	if os.Getenv(EnvDebugLog) != "" {
		opts.ExtraConf = append(opts.ExtraConf, "log_min_messages = debug1")
	}
	c, err := pgcluster.Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the test cluster: %v\n", err)
		return 1
	}
	Cluster = c
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "warning: closing the test cluster: %v\n", err)
		}
	}()

	if err := SetupCluster(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cluster setup: %v\n--- server log (tail) ---\n%s\n", err, c.LogTail(80))
		return 1
	}
	defer removeCLIBuild()
	code := m.Run()
	log.Printf("testkit: the package's server used %v of CPU", c.ServerCPU())
	return code
}

// CheckInstalled verifies that `make install` has put the extension where
// the local server will look for it.
func CheckInstalled() error {
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

// SetupCluster creates the extension and the test roles.
func SetupCluster(ctx context.Context) error {
	conn, err := Cluster.Connect(ctx, DBName, Superuser)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())

	if _, err := conn.Exec(ctx, "CREATE EXTENSION lantern_async"); err != nil {
		return fmt.Errorf("CREATE EXTENSION lantern_async: %w", err)
	}
	for _, r := range TestRoles {
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN", r)); err != nil {
			return fmt.Errorf("create role %s: %w", r, err)
		}
	}
	if _, err := conn.Exec(ctx, "GRANT CREATE ON SCHEMA public TO "+strings.Join(TestRoles, ", ")); err != nil {
		return err
	}
	// A failure here (e.g. a missing function) is only logged: the structure
	// tests pinpoint it.
	if err := GrantExtensionAccess(ctx, conn); err != nil {
		log.Printf("warning: %v", err)
	}
	return nil
}

// GrantExtensionAccess grants the test roles the use of the extension's
// objects. The extension is expected to grant these to PUBLIC already;
// granting again is harmless. A test that re-creates the extension calls it
// again. (Its functions are PUBLIC's to execute: granting them to the roles
// too would make an update's new functions differ from a fresh install's.)
func GrantExtensionAccess(ctx context.Context, conn *pgx.Conn) error {
	roles := strings.Join(TestRoles, ", ")
	var errs []error
	for _, g := range []string{
		"GRANT USAGE ON SCHEMA lantern TO " + roles,
		"GRANT SELECT ON lantern.tasks TO " + roles,
	} {
		if _, err := conn.Exec(ctx, g); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", g, err))
		}
	}
	return errors.Join(errs...)
}
