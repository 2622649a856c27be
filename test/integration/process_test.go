/*
Copyright The Switchboard Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// The helpers in this file run the real switchboard-apiserver binary as a
// child process, for what an in-process server cannot show: signal handling,
// the exit code, and what is left behind when the process is gone.

var builtServer struct {
	once sync.Once
	path string
	err  error
}

// serverBinary builds ./cmd/switchboard-apiserver once per test binary and
// returns its path. When the tests run with -race, so is the server built, so
// that a data race in the child fails it with exit code 66.
//
// The binary goes to a directory of its own under os.TempDir, one per checkout
// and race mode, reused by later runs (go build is incremental, and the new
// binary replaces the old one by rename, so concurrent runs never see a
// half-written file): no test hook runs after every test, so a directory made
// per run could never be removed.
func serverBinary(t *testing.T) string {
	t.Helper()
	builtServer.once.Do(func() {
		builtServer.path, builtServer.err = buildServer()
	})
	if builtServer.err != nil {
		t.Fatalf("building switchboard-apiserver: %v", builtServer.err)
	}
	return builtServer.path
}

func buildServer() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "switchboard-integration-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name := "switchboard-apiserver"
	args := []string{"build"}
	if raceEnabled() {
		name += "-race"
		args = append(args, "-race")
	}
	final := filepath.Join(dir, name)
	tmp := filepath.Join(dir, fmt.Sprintf(".%s-%d", name, os.Getpid()))
	args = append(args, "-o", tmp, "./cmd/switchboard-apiserver")

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), root, err, out)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return final, nil
}

// repoRoot walks up from the working directory to the directory with go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// raceEnabled says whether this test binary was built with -race.
func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// serverProcess is switchboard-apiserver running as a child process, in a
// process group of its own.
type serverProcess struct {
	*testServer // host, PKI and the client helpers; its in-process fields are unused
	cmd         *exec.Cmd
	port        int
	logFile     string
	gone        chan struct{} // closed once the process has been reaped
	waitErr     error         // what cmd.Wait returned; read after gone is closed
}

// startProcess runs the binary with the PKI's serving and client-CA flags on
// a free port plus extra, and waits until /readyz passes. The process is
// killed (its whole group) when the test ends, if it is still running.
func startProcess(t *testing.T, p *pki, extra ...string) *serverProcess {
	t.Helper()
	bin := serverBinary(t)
	port := freePort(t)
	logFile := filepath.Join(t.TempDir(), "switchboard-apiserver.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = log.Close() }()

	cmd := exec.Command(bin, append(p.serverArgs(port), extra...)...)
	// An *os.File is handed to the child as is: no copying goroutine, and
	// the log is complete once the process has exited.
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &serverProcess{
		testServer: &testServer{t: t, pki: p, host: "https://127.0.0.1:" + strconv.Itoa(port)},
		cmd:        cmd,
		port:       port,
		logFile:    logFile,
		gone:       make(chan struct{}),
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.gone)
	}()
	t.Cleanup(func() {
		select {
		case <-s.gone:
		default:
			// Only the group this test started (Setpgid: its id is the pid).
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-s.gone
		}
		if t.Failed() {
			t.Logf("switchboard-apiserver log (%s):\n%s", logFile, s.logTail(200))
		}
	})

	if err := s.waitReady(2 * time.Minute); err != nil {
		t.Fatalf("switchboard-apiserver did not become ready: %v", err)
	}
	return s
}

// waitReady polls /readyz until it passes, failing early if the process exits.
func (s *serverProcess) waitReady(timeout time.Duration) error {
	client := s.httpClient(s.adminConfig())
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-s.gone:
			if s.waitErr == nil {
				return false, errors.New("process exited with status 0")
			}
			return false, fmt.Errorf("process exited: %w", s.waitErr)
		default:
		}
		reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		code, body := get(reqCtx, client, s.host+"/readyz")
		last = fmt.Sprintf("%d %s", code, body)
		return code == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last /readyz: %s)", err, last)
	}
	return nil
}

// waitExit waits for the process to exit and returns its exit code, or -1
// and false if it is still running after timeout.
func (s *serverProcess) waitExit(timeout time.Duration) (int, bool) {
	select {
	case <-s.gone:
		return s.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return -1, false
	}
}

// logTail returns the last lines of the process's log.
func (s *serverProcess) logTail(lines int) string {
	data, err := os.ReadFile(s.logFile)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// children lists the processes whose parent is pid, from /proc.
func children(pid int) []int {
	var found []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			found = append(found, child)
		}
	}
	return found
}
