package pgcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// dockerfilePath is relative to the repository root (the build context).
const dockerfilePath = "tests/docker/Dockerfile"

// EnvPG is the PostgreSQL major version of the docker backend's image
// (15, 17 or 18; default 15). Its Debian base must exist
// (tests/docker/base-image.sh), as must the Go image (go-image.sh).
const EnvPG = "LANTERN_ASYNC_TEST_PG"

// debianSuites maps a PostgreSQL major version to the Debian suite that packages it.
var debianSuites = map[string]string{"15": "bookworm", "17": "trixie", "18": "sid"}

// imageBuildArgs are tests/docker/Dockerfile's arguments for the version in EnvPG.
func imageBuildArgs() (map[string]*string, error) {
	pg := os.Getenv(EnvPG)
	if pg == "" {
		pg = "15"
	}
	suite, ok := debianSuites[pg]
	if !ok {
		return nil, fmt.Errorf("pgcluster: %s=%s: no Debian suite packages that version (15, 17 or 18)", EnvPG, pg)
	}
	goVersion := strings.TrimPrefix(runtime.Version(), "go")
	return map[string]*string{"PG": &pg, "SUITE": &suite, "GO_VERSION": &goVersion}, nil
}

// dockerBackend runs the server in a container of the ready image
// (tests/docker/Dockerfile) for the version in EnvPG.
type dockerBackend struct {
	ctr  testcontainers.Container
	host string
	port string
}

// repoRoot derives the repository root from this file's location
// (tests/internal/pgcluster/docker.go).
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("pgcluster: cannot locate the repository root; set Options.RepoRoot")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..")), nil
}

func startDocker(ctx context.Context, opts *Options) (backend, error) {
	if opts.NoPreload {
		return nil, fmt.Errorf("pgcluster: NoPreload is %w", ErrNotSupported)
	}
	root := opts.RepoRoot
	if root == "" {
		var err error
		if root, err = repoRoot(); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(root, dockerfilePath)); err != nil {
		return nil, fmt.Errorf("pgcluster: docker backend needs %s: %w", dockerfilePath, err)
	}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 15 * time.Minute
	}

	cmd := []string{"postgres"}
	for _, kv := range opts.settings() {
		cmd = append(cmd, "-c", kv[0]+"="+strings.Trim(kv[1], "'"))
	}
	for _, kv := range opts.ExtraConf {
		cmd = append(cmd, "-c", strings.ReplaceAll(kv, " = ", "="))
	}

	buildArgs, err := imageBuildArgs()
	if err != nil {
		return nil, err
	}
	var buildLog io.Writer = io.Discard
	if os.Getenv("LANTERN_ASYNC_TEST_BUILD_LOG") != "" {
		buildLog = os.Stderr
	}

	req := testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			FromDockerfile: testcontainers.FromDockerfile{
				Context:        root,
				Dockerfile:     dockerfilePath,
				Repo:           "lantern_async_test",
				BuildArgs:      buildArgs,
				KeepImage:      true,
				BuildLogWriter: buildLog,
			},
			ExposedPorts: []string{"5432/tcp"},
			Env:          map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust"},
			Cmd:          cmd,
			// The entrypoint's temporary server (initdb time) logs to
			// /dev/null: the line appears once, from the real server.
			WaitingFor: wait.ForAll(
				wait.ForLog("database system is ready to accept connections").
					WithStartupTimeout(timeout),
				wait.ForListeningPort("5432/tcp").WithStartupTimeout(timeout),
			),
		},
		Started: true,
	}
	opts.Logf("pgcluster: building %s and starting a container (this can take minutes)", dockerfilePath)
	ctr, err := testcontainers.GenericContainer(ctx, req)
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		return nil, fmt.Errorf("pgcluster: docker backend: %w", err)
	}
	host, err := ctr.Host(ctx)
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("pgcluster: docker host: %w", err)
	}
	port, err := ctr.MappedPort(ctx, "5432/tcp")
	if err != nil {
		_ = testcontainers.TerminateContainer(ctr)
		return nil, fmt.Errorf("pgcluster: mapped port: %w", err)
	}
	return &dockerBackend{ctr: ctr, host: host, port: port.Port()}, nil
}

func (d *dockerBackend) dsn(database, user string) string {
	return fmt.Sprintf("host=%s port=%s dbname=%s user=%s sslmode=disable",
		dsnQuote(d.host), d.port, dsnQuote(database), dsnQuote(user))
}

func (d *dockerBackend) stop(context.Context, StopMode) error { return ErrNotSupported }

func (d *dockerBackend) start(context.Context) error { return ErrNotSupported }

func (d *dockerBackend) log() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := d.ctr.Logs(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err == io.EOF {
		err = nil
	}
	return string(b), err
}

func (d *dockerBackend) close(ctx context.Context) error {
	return d.ctr.Terminate(ctx)
}
