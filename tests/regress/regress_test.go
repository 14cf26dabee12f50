// Package regress runs the pg_regress files (sql/*.sql) and the isolation
// specs (specs/*.spec) of this directory against a throw-away cluster of
// its own, each file in a fresh database with the extension; see README.md.
package regress

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
)

// superuser is the bootstrap superuser that initdb -U postgres creates.
const superuser = "postgres"

var (
	cluster *pgcluster.Cluster
	// pin holds the advisory lock that pinned, the only worker's task, waits for.
	pin    *pgx.Conn
	pinned int64
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The docker backend may build the image first (minutes).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{MaxWorkers: 1, Logf: log.Printf})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the cluster: %v\n", err)
		return 1
	}
	cluster = c
	defer func() {
		if err := c.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "warning: closing the cluster: %v\n", err)
		}
	}()
	if err := setUp(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cluster setup: %v\n--- server log (tail) ---\n%s\n", err, c.LogTail(60))
		return 1
	}
	code := m.Run()
	// A file that freed the worker (a superuser's cancel_all_async_tasks()
	// reaching another database, say) would make the others depend on timing.
	check, cancelCheck := context.WithTimeout(context.Background(), time.Minute)
	defer cancelCheck()
	var status string
	if err := pin.QueryRow(check, "SELECT status FROM lantern.tasks WHERE jobid = $1", pinned).Scan(&status); err != nil || status != "running" {
		fmt.Fprintf(os.Stderr, "FAIL: the task that pins the only worker is %q (%v), no longer running\n", status, err)
		return 1
	}
	return code
}

// setUp creates the login roles alice and bob, and pins the only worker
// (max_workers = 1): it runs a task of database postgres that waits for an
// advisory lock this process holds until the end. So no task of the files
// ever starts, and a task they submit stays pending until they cancel it,
// however slow the machine: their output cannot depend on timing.
func setUp(ctx context.Context) error {
	conn, err := cluster.Connect(ctx, "postgres", superuser)
	if err != nil {
		return err
	}
	pin = conn
	for _, sql := range []string{"CREATE EXTENSION lantern_async", "CREATE ROLE alice LOGIN", "CREATE ROLE bob LOGIN"} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	err = conn.QueryRow(ctx, "SELECT lantern.async_task('SELECT pg_advisory_lock(1)') FROM pg_advisory_lock(1)").Scan(&pinned)
	if err != nil {
		return err
	}
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(20 * time.Millisecond) {
		var status string
		if err := conn.QueryRow(ctx, "SELECT status FROM lantern.tasks WHERE jobid = $1", pinned).Scan(&status); err != nil {
			return err
		}
		if status == "running" {
			return nil
		}
	}
	return fmt.Errorf("the pinning task %d did not start within a minute", pinned)
}

// newDatabase creates database regress_<name> with the extension.
func newDatabase(t *testing.T, name string) string {
	t.Helper()
	db := "regress_" + name
	ctx := context.Background()
	if err := cluster.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Exec(ctx, db, "CREATE EXTENSION lantern_async"); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestRegress runs each sql/<name>.sql with pg_regress against expected/<name>.out.
func TestRegress(t *testing.T) {
	runEach(t, "sql", ".sql", "src/test/regress/pg_regress")
}

// TestIsolation runs each specs/<name>.spec with pg_isolation_regress against expected/<name>.out.
func TestIsolation(t *testing.T) {
	runEach(t, "specs", ".spec", "src/test/isolation/pg_isolation_regress")
}

// runEach runs program (under pkglibdir/pgxs) on every file of dir, in a
// subtest and a database of its own; a failure shows regression.diffs.
func runEach(t *testing.T, dir, ext, program string) {
	pkglib, err := pgcluster.PGConfig("pkglibdir")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(pkglib, "pgxs", program)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%v: PostgreSQL's test drivers come with its server development package (postgresql-server-dev-15)", err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s/*%s here (%v)", dir, ext, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ext)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runDriver(t, path, name, newDatabase(t, name))
		})
	}
}

// runDriver runs the driver at path on file name in db. The output
// directory stays after a failure: results/<name>.out is what the file
// printed (see README.md, "Changing an expected file").
func runDriver(t *testing.T, path, name, db string) {
	cfg, err := pgx.ParseConfig(cluster.DSN(db, superuser))
	if err != nil {
		t.Fatal(err)
	}
	bindir, err := pgcluster.PGConfig("bindir")
	if err != nil {
		t.Fatal(err)
	}
	inputdir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	outputdir, err := os.MkdirTemp("", "lantern_async_regress_"+name+"_")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--use-existing", "--host="+cfg.Host, fmt.Sprintf("--port=%d", cfg.Port),
		"--user="+superuser, "--dbname="+db, "--inputdir="+inputdir, "--outputdir="+outputdir,
		"--bindir="+bindir, name)
	cmd.Env = driverEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		diffs, _ := os.ReadFile(filepath.Join(outputdir, "regression.diffs"))
		t.Fatalf("%s %s: %v\n%s\n--- regression.diffs (- expected, + printed; kept in %s) ---\n%s",
			filepath.Base(path), name, err, out, outputdir, diffs)
	}
	_ = os.RemoveAll(outputdir)
}

// driverEnv is the environment without libpq variables that could point
// the drivers elsewhere.
func driverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}
