package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
)

// dockerfilePath is relative to the repository root (the build context).
const dockerfilePath = "tests/docker/Dockerfile"

// EnvPG is the PostgreSQL major version of the docker backend's image
// (15, 17 or 18; default 15). Its Debian base must exist
// (tests/docker/base-image.sh), as must the Go image (go-image.sh).
const EnvPG = "LANTERN_ASYNC_TEST_PG"

// EnvImage names a ready image already built (tests/docker/image.sh) for
// the docker backend to use instead of building one; EnvPG is then unused.
const EnvImage = "LANTERN_ASYNC_TEST_IMAGE"

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

// containerMachine is a container of the ready image (tests/docker/Dockerfile)
// that only holds a process; the clusters' programs run in it with docker
// exec. Three settings make it behave as this machine does for the tests:
//   - root, a directory of this machine, is mounted at the same path, so the
//     clusters' directories (data, log, socket) have one name on both sides;
//   - the host's PID namespace, so pg_backend_pid() is a PID the tests can
//     signal and read in /proc, and pg_ctl can stop a server it started;
//   - 1 GB of /dev/shm, for parallel index builds (Docker's default is 64 MB).
//
// Every cluster of the test process shares one container.
type containerMachine struct {
	ctr   testcontainers.Container
	root  string
	users int // guarded by dockerMu
}

var (
	dockerMu sync.Mutex
	shared   *containerMachine
)

// acquireContainer returns the shared container, starting it (and building
// the image from the current tree) on first use.
func acquireContainer(ctx context.Context, opts *Options) (*containerMachine, error) {
	dockerMu.Lock()
	defer dockerMu.Unlock()
	if shared == nil {
		m, err := startContainer(ctx, opts)
		if err != nil {
			return nil, err
		}
		shared = m
	}
	shared.users++
	return shared, nil
}

func startContainer(ctx context.Context, opts *Options) (*containerMachine, error) {
	req, err := containerRequest(opts)
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("/tmp", "lantern_async_docker_")
	if err == nil {
		// The container's postgres user must get through it to its clusters.
		err = os.Chmod(root, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	req.HostConfigModifier = func(hc *container.HostConfig) {
		hc.Binds = append(hc.Binds, root+":"+root)
		hc.PidMode = "host"
		hc.ShmSize = 1 << 30
	}
	if image := os.Getenv(EnvImage); image != "" {
		opts.Logf("pgcluster: starting a container of %s", image)
	} else {
		opts.Logf("pgcluster: building %s and starting a container (this can take minutes)", dockerfilePath)
		// Test packages run in parallel, each in a process of its own:
		// one builds the image, the others then find every layer cached.
		unlock, err := lockImageBuild()
		if err != nil {
			_ = os.RemoveAll(root)
			return nil, err
		}
		defer unlock()
	}
	ctr, err := testcontainers.GenericContainer(ctx, req)
	if err != nil {
		if ctr != nil {
			_ = testcontainers.TerminateContainer(ctr)
		}
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("pgcluster: docker backend: %w", err)
	}
	return &containerMachine{ctr: ctr, root: root}, nil
}

// lockImageBuild takes a lock that every test process of this machine
// building the image takes (flock on a file in the temporary directory; the
// kernel lets go of it if the process dies).
func lockImageBuild() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "lantern_async_test_image.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: image build lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("pgcluster: image build lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// containerRequest asks for a container whose only process waits (the
// entrypoint runs any command other than postgres as it is), of the image
// in EnvImage, or else of one built for EnvPG from the repository.
func containerRequest(opts *Options) (testcontainers.GenericContainerRequest, error) {
	hold := []string{"sleep", "infinity"}
	if image := os.Getenv(EnvImage); image != "" {
		return testcontainers.GenericContainerRequest{
			ContainerRequest: testcontainers.ContainerRequest{Image: image, Cmd: hold},
			Started:          true,
		}, nil
	}
	root := opts.RepoRoot
	if root == "" {
		var err error
		if root, err = repoRoot(); err != nil {
			return testcontainers.GenericContainerRequest{}, err
		}
	}
	if _, err := os.Stat(filepath.Join(root, dockerfilePath)); err != nil {
		return testcontainers.GenericContainerRequest{}, fmt.Errorf("pgcluster: docker backend needs %s: %w", dockerfilePath, err)
	}
	buildArgs, err := imageBuildArgs()
	if err != nil {
		return testcontainers.GenericContainerRequest{}, err
	}
	var buildLog io.Writer = io.Discard
	if os.Getenv("LANTERN_ASYNC_TEST_BUILD_LOG") != "" {
		buildLog = os.Stderr
	}
	return testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			FromDockerfile: testcontainers.FromDockerfile{
				Context:        root,
				Dockerfile:     dockerfilePath,
				Repo:           "lantern_async_test",
				Tag:            "pg" + *buildArgs["PG"],
				BuildArgs:      buildArgs,
				KeepImage:      true,
				BuildLogWriter: buildLog,
			},
			Cmd: hold,
		},
		Started: true,
	}, nil
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

func (m *containerMachine) run(ctx context.Context, dir, program string, args ...string) (string, error) {
	return m.exec(ctx, "postgres", dir, append([]string{program}, args...))
}

// exec runs cmd in the container as user, in dir, with a C locale (the
// image's PATH has the server's programs).
func (m *containerMachine) exec(ctx context.Context, user, dir string, cmd []string) (string, error) {
	code, r, err := m.ctr.Exec(ctx, cmd, tcexec.WithUser(user), tcexec.WithWorkingDir(dir),
		tcexec.WithEnv([]string{"LANG=C", "LC_ALL=C"}), tcexec.Multiplexed())
	if err != nil {
		return "", fmt.Errorf("pgcluster: docker exec %s: %w", cmd[0], err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return string(out), fmt.Errorf("pgcluster: docker exec %s: output: %w", cmd[0], err)
	}
	if code != 0 {
		return string(out), fmt.Errorf("pgcluster: docker exec %s: exit status %d", cmd[0], code)
	}
	return string(out), nil
}

// own chowns inside the container: its postgres user need not have the
// host's uid.
func (m *containerMachine) own(ctx context.Context, path string) error {
	out, err := m.exec(ctx, "root", "/", []string{"chown", "-R", "postgres:postgres", path})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

func (m *containerMachine) tempRoot(bool) string { return m.root }

func (m *containerMachine) share() {
	dockerMu.Lock()
	defer dockerMu.Unlock()
	m.users++
}

// release removes the container and its root after the last cluster on it.
func (m *containerMachine) release(ctx context.Context) error {
	dockerMu.Lock()
	defer dockerMu.Unlock()
	if m.users--; m.users > 0 {
		return nil
	}
	if shared == m {
		shared = nil
	}
	err := m.ctr.Terminate(ctx)
	if keep := os.Getenv(EnvKeep); keep == "" || keep == "0" {
		err = errors.Join(err, os.RemoveAll(m.root))
	}
	return err
}
