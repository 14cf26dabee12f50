package tests

import (
	"bytes"
	"context"
	"errors"
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

// cliTimeout bounds one run of the command.
const cliTimeout = 2 * time.Minute

// buildCLI builds the command into the test's temporary directory.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lantern-async")
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, "go", "build", "-o", bin, "../cmd/lantern-async")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/lantern-async:\n%s", out)
	return bin
}

// cli runs the command as role on the test database.
type cli struct {
	t    *testing.T
	bin  string
	role string
}

func newCLI(t *testing.T, role string) *cli {
	t.Helper()
	return &cli{t: t, bin: buildCLI(t), role: role}
}

// as returns the same binary run as another role.
func (c *cli) as(role string) *cli { return &cli{t: c.t, bin: c.bin, role: role} }

// command makes the process: --dsn for the role, and no PG* variables of
// ours (the DSN says everything).
func (c *cli) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--dsn", cluster.DSN(dbName, c.role)}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// cliResult is how a run ended.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return "exit status " + strconv.Itoa(r.code) + "\n--- stdout ---\n" + r.stdout + "--- stderr ---\n" + r.stderr
}

// run runs the command to its end, stdin and stdout pipes (not terminals).
func (c *cli) run(args ...string) cliResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdin = strings.NewReader("")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return cliResult{code: exitCodeOf(c.t, err), stdout: out.String(), stderr: errOut.String()}
}

func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, err, "running lantern-async")
	return 0
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cliProc is a running command.
type cliProc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer // with a pseudo-terminal, both in stdout
	done           chan struct{}
	result         cliResult
}

// start starts the command with pipes.
func (c *cli) start(args ...string) *cliProc {
	c.t.Helper()
	p := c.newProc(args)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	require.NoError(c.t, p.cmd.Start())
	go p.wait(nil)
	return p
}

// startPty starts the command with a pseudo-terminal as its standard
// streams and controlling terminal; write sends it keystrokes.
func (c *cli) startPty(args ...string) (p *cliProc, write func(string)) {
	c.t.Helper()
	p = c.newProc(args)
	tty, err := pty.StartWithSize(p.cmd, &pty.Winsize{Rows: 40, Cols: 160})
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

func (c *cli) newProc(args []string) *cliProc {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	c.t.Cleanup(cancel)
	p := &cliProc{t: c.t, cmd: c.command(ctx, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{},
		done: make(chan struct{})}
	c.t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

func (p *cliProc) wait(after func()) {
	err := p.cmd.Wait()
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
	p.result = cliResult{code: code, stdout: p.stdout.String(), stderr: p.stderr.String()}
	close(p.done)
}

// waitOutput waits until the process's standard output contains s.
func (p *cliProc) waitOutput(s string) {
	p.t.Helper()
	require.Eventually(p.t, func() bool { return strings.Contains(p.stdout.String(), s) },
		waitTimeout, tick, "lantern-async output to contain %q; it is:\n%s\nstderr:\n%s", s, p.stdout, p.stderr)
}

// end waits for the process to exit.
func (p *cliProc) end() cliResult {
	p.t.Helper()
	select {
	case <-p.done:
		return p.result
	case <-time.After(cliTimeout):
		p.t.Fatalf("lantern-async did not exit; output so far:\n%s\nstderr:\n%s", p.stdout, p.stderr)
		return cliResult{}
	}
}

// cliJobID is the jobid a submit printed on its first line.
func cliJobID(t *testing.T, r cliResult) int64 {
	t.Helper()
	first, _, _ := strings.Cut(r.stdout, "\n")
	id, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	require.NoError(t, err, "jobid on the first line of:\n%s", r)
	return id
}
