package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/lanterndata/lantern_async/tests/internal/testkit"

	"github.com/jackc/pgx/v5"
	"github.com/lanterndata/lantern_async/tests/internal/pgcluster"
	"github.com/stretchr/testify/require"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// envImage names the ready image to test (make image: lantern_async:pg17).
const envImage = pgcluster.EnvImage

// readyImage returns the image under test, or skips the test saying why.
func readyImage(t *testing.T) string {
	t.Helper()
	image := os.Getenv(envImage)
	if image == "" {
		t.Skipf("%s is not set: build the image (make image) and set %s=lantern_async:pg17 to test it", envImage, envImage)
	}
	if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", image).CombinedOutput(); err != nil {
		t.Fatalf("%s=%s, but docker cannot inspect it: %v\n%s", envImage, image, err, out)
	}
	return image
}

// startReadyImage starts the ready image the way its README says
// (docker run -e POSTGRES_PASSWORD=... -p 5432), with a user and a database
// of its own, and returns a TCP connection to it with the password.
func startReadyImage(ctx context.Context, t *testing.T, image string) *pgx.Conn {
	t.Helper()
	ctr, err := testcontainers.Run(ctx, image,
		testcontainers.WithEnv(map[string]string{
			"POSTGRES_PASSWORD": "s3cret",
			"POSTGRES_USER":     "app",
			"POSTGRES_DB":       "appdb",
		}),
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithWaitStrategy(
			wait.ForLog("database system is ready to accept connections").WithStartupTimeout(2*time.Minute),
			wait.ForListeningPort("5432/tcp").WithStartupTimeout(2*time.Minute)),
	)
	testcontainers.CleanupContainer(t, ctr)
	require.NoError(t, err, "start %s", image)

	host, err := ctr.Host(ctx)
	require.NoError(t, err)
	port, err := ctr.MappedPort(ctx, "5432/tcp")
	require.NoError(t, err)
	dsn := fmt.Sprintf("host=%s port=%s user=app dbname=appdb sslmode=disable", host, port.Port())

	_, err = pgx.Connect(ctx, dsn+" password=wrong")
	require.ErrorContains(t, err, "28P01", "a wrong password is refused over TCP")

	conn, err := pgx.Connect(ctx, dsn+" password=s3cret")
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// requireTaskMadeTable queues query (which creates table) as the current
// role, waits for its outcome, and checks that it succeeded as role and
// that role owns the table.
func requireTaskMadeTable(ctx context.Context, t *testing.T, conn *pgx.Conn, query, table, role string) {
	t.Helper()
	jobid := testkit.QueryOne[int64](t, conn, "SELECT lantern.async_task($1, 'image')", query)
	_, err := conn.Exec(ctx, "CALL lantern.wait_task($1, '60s', NULL)", jobid)
	require.NoError(t, err)
	var status, user string
	require.NoError(t, conn.QueryRow(ctx, "SELECT status, username FROM lantern.tasks WHERE jobid = $1", jobid).Scan(&status, &user))
	require.Equal(t, "succeeded", status)
	require.Equal(t, role, user)
	owner := testkit.QueryOne[string](t, conn, "SELECT tableowner FROM pg_tables WHERE tablename = $1", table)
	require.Equal(t, role, owner, "the task ran as the role that queued it")
}

// TestReadyImage: in the image, the extension is preloaded and created in
// POSTGRES_DB, and a task runs there as the role that queued it.
func TestReadyImage(t *testing.T) {
	image := readyImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn := startReadyImage(ctx, t, image)

	preload := testkit.QueryOne[string](t, conn, "SHOW shared_preload_libraries")
	require.Equal(t, "lantern_async", preload)
	version := testkit.QueryOne[string](t, conn, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_async'")
	require.Equal(t, testkit.CurrentVersion, version, "CREATE EXTENSION done in POSTGRES_DB")

	requireTaskMadeTable(ctx, t, conn, "CREATE TABLE made_by_task AS SELECT 42 AS answer", "made_by_task", "app")
	require.Equal(t, int32(42), testkit.QueryOne[int32](t, conn, "SELECT answer FROM made_by_task"))
}

// TestReadyImageNoLoginRole: from 17 a worker logs in as a role without
// LOGIN (BGWORKER_BYPASS_ROLELOGINCHECK), so such a role can submit; on 15
// it is refused at submit time, as before.
func TestReadyImageNoLoginRole(t *testing.T) {
	image := readyImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn := startReadyImage(ctx, t, image)
	_, err := conn.Exec(ctx, "CREATE ROLE writer NOLOGIN; GRANT CREATE ON SCHEMA public TO writer; SET ROLE writer")
	require.NoError(t, err)

	if testkit.QueryOne[int32](t, conn, "SELECT current_setting('server_version_num')::int") < 170000 {
		_, err := conn.Exec(ctx, "SELECT lantern.async_task('SELECT 1')")
		pgErr := testkit.RequirePgError(t, err, "42501")
		require.Equal(t, `role "writer" cannot submit background tasks`, pgErr.Message)
		return
	}
	requireTaskMadeTable(ctx, t, conn, "CREATE TABLE made_by_writer (x int)", "made_by_writer", "writer")
}

// TestReadyImageWithoutPassword: like the official image, an empty data
// directory and neither POSTGRES_PASSWORD nor trust is refused with a hint.
func TestReadyImageWithoutPassword(t *testing.T) {
	image := readyImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctr, err := testcontainers.Run(ctx, image,
		testcontainers.WithWaitStrategy(wait.ForExit().WithExitTimeout(time.Minute)))
	testcontainers.CleanupContainer(t, ctr)
	require.NoError(t, err)
	state, err := ctr.State(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, state.ExitCode)
	logs, err := ctr.Logs(ctx)
	require.NoError(t, err)
	defer logs.Close()
	b, err := io.ReadAll(logs)
	require.NoError(t, err)
	require.Contains(t, string(b), "no superuser password is set")
}
