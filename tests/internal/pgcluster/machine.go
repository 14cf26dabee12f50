package pgcluster

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A machine runs a cluster's PostgreSQL programs: this one (the local
// backend) or a container of the ready image (the docker backend). Either
// way the cluster's directory is a path on this machine, where the harness
// writes the configuration, reads the log and connects through the socket.
type machine interface {
	// run runs a PostgreSQL program (initdb, pg_ctl, pg_basebackup) as the
	// server's OS user, in dir, and returns its combined output.
	run(ctx context.Context, dir, program string, args ...string) (string, error)
	// own gives path, and everything under it, to the server's OS user.
	own(ctx context.Context, path string) error
	// tempRoot is the directory in which cluster directories are made;
	// onDisk: one whose fsync reaches a disk (Options.OnDisk).
	tempRoot(onDisk bool) string
	// share counts one more cluster on the machine (a standby on its
	// primary's); release undoes Start's or share's count, and the last
	// release frees the machine.
	share()
	release(ctx context.Context) error
}

// localMachine runs the programs of `pg_config --bindir`, through
// `runuser -u postgres` when the tests run as root (PostgreSQL refuses to
// run as root).
type localMachine struct {
	bindir     string
	asPostgres bool
}

func newLocalMachine() (*localMachine, error) {
	bindir, err := PGConfig("bindir")
	if err != nil {
		return nil, err
	}
	return &localMachine{bindir: bindir, asPostgres: os.Geteuid() == 0}, nil
}

func (m *localMachine) run(ctx context.Context, dir, program string, args ...string) (string, error) {
	path := filepath.Join(m.bindir, program)
	var cmd *exec.Cmd
	if m.asPostgres {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = dir
	cmd.Env = serverEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves the postmaster running; it must not keep our
	// pipes open, but bound the wait anyway.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	return out.String(), err
}

// serverEnv is the environment without libpq/server variables that could
// redirect the tools, plus a C locale.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LANG=C", "LC_ALL=C")
}

func (m *localMachine) own(_ context.Context, path string) error {
	if !m.asPostgres {
		return nil
	}
	return chownToPostgres(path)
}

func (m *localMachine) tempRoot(onDisk bool) string {
	if onDisk && os.Getenv(EnvTempDir) == "" {
		return "/tmp"
	}
	return localRoot()
}

// EnvTempDir names the directory in which the local backend makes its
// clusters' directories. Unset: /dev/shm when it is a memory file system
// with room for the suite, else /tmp.
const EnvTempDir = "LANTERN_ASYNC_TEST_TMPDIR"

// memRoomNeeded is what /dev/shm must have free to be used: the scale
// package's 520 database copies take about 5 GB, and other packages run
// beside it. In memory, a copy is not written back to the disk, nor a
// removed cluster unlinked from it: the suite spends less CPU there.
const memRoomNeeded = 8 << 30

const tmpfsMagic = 0x01021994

var localRoot = sync.OnceValue(func() string {
	if dir := os.Getenv(EnvTempDir); dir != "" {
		return dir
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err == nil && st.Type == tmpfsMagic &&
		st.Bavail*uint64(st.Bsize) >= memRoomNeeded {
		return "/dev/shm"
	}
	return "/tmp"
})

func (m *localMachine) share() {}

func (m *localMachine) release(context.Context) error { return nil }

// chownToPostgres gives the whole tree under dir to the postgres OS user.
func chownToPostgres(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("pgcluster: running as root needs the postgres OS user: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("pgcluster: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return fmt.Errorf("pgcluster: gid %q: %w", u.Gid, err)
	}
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, gid); err != nil {
			return fmt.Errorf("pgcluster: chown %s: %w", path, err)
		}
		return nil
	})
}
