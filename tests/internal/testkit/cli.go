package testkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"
)

// Driving the lantern-async command (cmd/lantern-async) as a process.

// CLITimeout bounds one run of the command.
const CLITimeout = 2 * time.Minute

// cliBuild is the command built once per test process (package), into a
// directory removed when the process ends (Run).
var cliBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// BuildCLI builds the command once for the package's tests and returns its path.
func BuildCLI(t *testing.T) string {
	t.Helper()
	cliBuild.once.Do(func() {
		if cliBuild.dir, cliBuild.err = os.MkdirTemp("", "lantern-async-cli-"); cliBuild.err != nil {
			return
		}
		cliBuild.bin = filepath.Join(cliBuild.dir, "lantern-async")
		c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(c, "go", "build", "-o", cliBuild.bin, "github.com/lanterndata/lantern_async/cmd/lantern-async")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			cliBuild.err = fmt.Errorf("go build ./cmd/lantern-async: %w\n%s", err, out)
		}
	})
	require.NoError(t, cliBuild.err)
	return cliBuild.bin
}

// removeCLIBuild removes the command built by BuildCLI, if any.
func removeCLIBuild() {
	if cliBuild.dir != "" {
		_ = os.RemoveAll(cliBuild.dir)
	}
}

// CLI runs the command as role on the test database.
type CLI struct {
	t    *testing.T
	bin  string
	role string
}

func NewCLI(t *testing.T, role string) *CLI {
	t.Helper()
	return &CLI{t: t, bin: BuildCLI(t), role: role}
}

// As returns the same binary run as another role.
func (c *CLI) As(role string) *CLI { return &CLI{t: c.t, bin: c.bin, role: role} }

// Command makes the process: --dsn for the role, and no PG* variables of
// ours (the DSN says everything).
func (c *CLI) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--dsn", Cluster.DSN(DBName, c.role)}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// CLIResult is how a run ended.
type CLIResult struct {
	Code           int
	Stdout, Stderr string
}

func (r CLIResult) String() string {
	return "exit status " + strconv.Itoa(r.Code) + "\n--- stdout ---\n" + r.Stdout + "--- stderr ---\n" + r.Stderr
}

// Run runs the command to its end, stdin and stdout pipes (not terminals).
func (c *CLI) Run(args ...string) CLIResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	cmd := c.Command(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdin = strings.NewReader("")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return CLIResult{Code: ExitCodeOf(c.t, err), Stdout: out.String(), Stderr: errOut.String()}
}

func ExitCodeOf(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, err, "running lantern-async")
	return 0
}

// SyncBuffer is a bytes.Buffer that a process writes while the test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// CLIProc is a running command.
type CLIProc struct {
	t              *testing.T
	Cmd            *exec.Cmd
	stdout, stderr *SyncBuffer // with a pseudo-terminal, both in stdout
	done           chan struct{}
	result         CLIResult
}

// Start starts the command with pipes.
func (c *CLI) Start(args ...string) *CLIProc {
	c.t.Helper()
	p := c.newProc(args)
	p.Cmd.Stdout, p.Cmd.Stderr = p.stdout, p.stderr
	require.NoError(c.t, p.Cmd.Start())
	go p.wait(nil)
	return p
}

// StartPty starts the command with a pseudo-terminal as its standard
// streams and controlling terminal; write sends it keystrokes.
func (c *CLI) StartPty(args ...string) (p *CLIProc, write func(string)) {
	c.t.Helper()
	p = c.newProc(args)
	tty, err := pty.StartWithSize(p.Cmd, &pty.Winsize{Rows: 40, Cols: 160})
	require.NoError(c.t, err)
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(p.stdout, tty) // ends with EIO once the process exited
		close(copied)
	}()
	go p.wait(func() {
		<-copied
		_ = tty.Close()
	})
	return p, func(s string) { _, err := tty.WriteString(s); require.NoError(c.t, err) }
}

func (c *CLI) newProc(args []string) *CLIProc {
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	c.t.Cleanup(cancel)
	p := &CLIProc{t: c.t, Cmd: c.Command(ctx, args...), stdout: &SyncBuffer{}, stderr: &SyncBuffer{},
		done: make(chan struct{})}
	c.t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

func (p *CLIProc) wait(after func()) {
	err := p.Cmd.Wait()
	if after != nil {
		after()
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	p.result = CLIResult{Code: code, Stdout: p.stdout.String(), Stderr: p.stderr.String()}
	close(p.done)
}

// WaitOutput waits until the process's standard output contains s.
func (p *CLIProc) WaitOutput(s string) {
	p.t.Helper()
	require.Eventually(p.t, func() bool { return strings.Contains(p.stdout.String(), s) },
		WaitTimeout, Tick, "lantern-async output to contain %q; it is:\n%s\nstderr:\n%s", s, p.stdout, p.stderr)
}

// End waits for the process to exit.
func (p *CLIProc) End() CLIResult {
	p.t.Helper()
	select {
	case <-p.done:
		return p.result
	case <-time.After(CLITimeout):
		p.t.Fatalf("lantern-async did not exit; output so far:\n%s\nstderr:\n%s", p.stdout, p.stderr)
		return CLIResult{}
	}
}

// CLIJobID is the jobid a submit printed on its first line.
func CLIJobID(t *testing.T, r CLIResult) int64 {
	t.Helper()
	first, _, _ := strings.Cut(r.Stdout, "\n")
	id, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	require.NoError(t, err, "jobid on the first line of:\n%s", r)
	return id
}
