// Package e2e runs the webhook's end-to-end tests against a real kube-apiserver and etcd
// on 127.0.0.1 (built by test/kubebins), with local stand-ins for AWS STS and the EKS
// Pod Identity credentials endpoint, and the real AWS SDK for Go v2 as the judge of the
// identity a pod ends up with.
//
// The binaries come from $KUBEBINS_DIR (make e2e sets it); without it TestMain runs
// test/kubebins/build.sh. Missing binaries fail the suite: it never skips.
//
// Set E2E_KEEP=1 to keep the temp dir (certificates, logs, kubeconfig) after the run.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	// cluster is the control plane every test shares.
	cluster *Cluster
	// fakes are the local AWS endpoints every test shares.
	fakes *AWSFakes
	// repoRoot is the directory of the project's go.mod.
	repoRoot string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	suiteStart := time.Now()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...) }
	fail := func(format string, args ...any) int {
		logf("FAIL: "+format, args...)
		return 1
	}

	var err error
	if repoRoot, err = findRepoRoot(); err != nil {
		return fail("%v", err)
	}
	binDir, err := kubeBinsDir(repoRoot)
	if err != nil {
		return fail("%v", err)
	}
	sweepStaleDirs(logf)
	dir, err := os.MkdirTemp("", tempDirPrefix)
	if err != nil {
		return fail("%v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fail("%v", err)
	}
	keep := os.Getenv("E2E_KEEP") != ""

	// Whatever happens from here on, no process outlives the suite.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("%v: stopping every process", s)
		_ = StopAll(5 * time.Second)
		if !keep {
			os.RemoveAll(dir)
		}
		os.Exit(130)
	}()
	defer func() {
		if r := recover(); r != nil {
			logf("panic: %v", r)
			code = 2
		}
		stopStart := time.Now()
		if err := StopAll(10 * time.Second); err != nil {
			logf("teardown: %v", err)
			if code == 0 {
				code = 1
			}
		}
		if code != 0 && cluster != nil {
			for _, p := range []*Process{cluster.APIServer, cluster.Etcd} {
				if p != nil {
					logf("%s log %s, last lines:\n%s", p.Name, p.LogPath, p.Tail(30))
				}
			}
		}
		if keep || code != 0 && os.Getenv("E2E_KEEP_ON_FAILURE") != "" {
			os.Remove(filepath.Join(dir, "pid")) // not swept by later runs
			logf("kept %s", dir)
		} else {
			os.RemoveAll(dir)
		}
		logf("teardown %s; whole suite %s", time.Since(stopStart).Round(time.Millisecond), time.Since(suiteStart).Round(time.Millisecond))
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	setupStart := time.Now()
	if cluster, err = StartCluster(ctx, dir, binDir); err != nil {
		return fail("starting the control plane: %v", err)
	}
	logf("etcd + kube-apiserver ready in %s at %s (binaries %s, dir %s)", cluster.ReadyIn.Round(time.Millisecond), cluster.Host, binDir, dir)
	if fakes, err = StartAWSFakes(cluster); err != nil {
		return fail("starting the local AWS endpoints: %v", err)
	}
	defer fakes.Close()
	logf("setup done in %s (STS %s, container credentials %s)", time.Since(setupStart).Round(time.Millisecond), fakes.STS.URL(), fakes.CC.URL())

	testsStart := time.Now()
	code = m.Run()
	logf("tests ran in %s", time.Since(testsStart).Round(time.Millisecond))
	return code
}

const tempDirPrefix = "pod-identity-webhook-e2e-"

// sweepStaleDirs removes the temp dirs of earlier runs whose test binary is gone. A
// panicking test kills the binary before TestMain can clean up; its subprocesses die
// with it (Pdeathsig), but its directory would stay.
func sweepStaleDirs(logf func(string, ...any)) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempDirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "pid"))
		if err != nil {
			continue // not ours, or still being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if err := os.RemoveAll(d); err == nil {
			logf("removed %s, left by an earlier run (pid %d) that died", d, pid)
		}
	}
}

// findRepoRoot returns the directory holding the main module's go.mod.
func findRepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the module (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}
