package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a subprocess whose stdout and stderr go to a log file. Every Process is
// registered, so StopAll (TestMain, signal handler) leaves nothing behind; if the test
// binary dies without running it (panic, -timeout), the kernel kills the process through
// Pdeathsig.
type Process struct {
	Name    string
	Path    string
	Args    []string
	LogPath string
	Cmd     *exec.Cmd
	Started time.Time

	done    chan struct{}
	waitErr error
	log     *os.File
}

var (
	procMu   sync.Mutex
	procs    []*Process
	logSeq   = map[string]int{}
	spawnReq = make(chan func())
)

// The goroutine that starts processes stays locked to its OS thread for the life of the
// test binary: Pdeathsig fires when the *thread* that forked the child exits, and a
// thread serving ordinary goroutines may be retired by the runtime.
func init() {
	go func() {
		runtime.LockOSThread()
		for f := range spawnReq {
			f()
		}
	}()
}

// StartProcessOptions are the optional parts of a process start.
type StartProcessOptions struct {
	Env []string // nil: the test binary's environment
	Dir string   // working directory; empty: the log directory
}

// startProcess starts bin with args; its output goes to logDir/<name>[-n].log.
func startProcess(logDir, name, bin string, args []string, o StartProcessOptions) (*Process, error) {
	procMu.Lock()
	logSeq[name]++
	n := logSeq[name]
	procMu.Unlock()
	logName := name + ".log"
	if n > 1 {
		logName = fmt.Sprintf("%s-%d.log", name, n)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(logDir, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = o.Env
	cmd.Dir = o.Dir
	if cmd.Dir == "" {
		cmd.Dir = logDir
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Process{Name: name, Path: bin, Args: args, LogPath: f.Name(), Cmd: cmd, done: make(chan struct{}), log: f}
	errc := make(chan error, 1)
	spawnReq <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.Started = time.Now()
	procMu.Lock()
	procs = append(procs, p)
	procMu.Unlock()
	go func() {
		p.waitErr = cmd.Wait()
		p.log.Close()
		close(p.done)
	}()
	return p, nil
}

// StartProcess starts a process for one test: it is stopped when the test ends, and its
// log is printed if the test failed.
func StartProcess(t testing.TB, name, bin string, args []string, o StartProcessOptions) *Process {
	t.Helper()
	p, err := startProcess(filepath.Join(cluster.Dir, "logs"), name, bin, args, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started %s (pid %d): %s %s; log %s", name, p.Cmd.Process.Pid, bin, strings.Join(args, " "), p.LogPath)
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("stopping %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s log (%s), last lines:\n%s", name, p.LogPath, p.Tail(80))
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after timeout. It returns an
// error only if the process did not go away; an exit status caused by the signals is
// not an error.
func (p *Process) Stop(timeout time.Duration) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	pid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s and was killed", p.Name, pid, timeout)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, pid)
	}
}

// Log returns the whole log.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail returns the last n lines of the log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// StopAll stops every process still running, newest first (the webhook before the
// apiserver, the apiserver before etcd).
func StopAll(timeout time.Duration) error {
	procMu.Lock()
	list := append([]*Process(nil), procs...)
	procMu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		if err := list[i].Stop(timeout); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
