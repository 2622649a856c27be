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

package topology

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a process the topology started, as recorded in its state file.
type Process struct {
	Name string   `json:"name"`
	PID  int      `json:"pid"`
	Args []string `json:"args"`
	Log  string   `json:"log"`

	// exited is closed when a process this program started has been
	// reaped; state is then its exit status. Both are nil for a process
	// read from a state file.
	exited chan struct{}
	state  *os.ProcessState
}

// startProcess starts a binary in its own session, so that it outlives the
// command that started it and a terminal's signals do not reach it. Its
// output goes to logDir/name.log.
func startProcess(name, logDir string, args []string, env ...string) (*Process, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }()

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(baseEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, PID: cmd.Process.Pid, Args: args, Log: logPath, exited: make(chan struct{})}
	// Reap the child when it exits while this process still runs, so that
	// it does not linger as a zombie that still looks alive.
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	return p, nil
}

// WaitExit waits up to timeout for a process this program started to exit
// and returns its exit code (-1 when a signal ended it). ok is false when it
// still runs, or when this program did not start it and cannot know.
func (p *Process) WaitExit(timeout time.Duration) (code int, ok bool) {
	if p.exited == nil {
		return 0, false
	}
	select {
	case <-p.exited:
		return p.state.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// baseEnv is the environment every process gets: only what a program needs
// to run. The caller's environment is not passed on; etcd, for one, reads
// every ETCD_* variable as a flag (ETCD_VERSION as --version).
func baseEnv() []string {
	var env []string
	for _, name := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// Alive says whether the recorded process still runs: the pid exists, is not
// a zombie, and runs the same command line (a recycled pid does not count).
func (p *Process) Alive() bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "cmdline"))
	if err != nil || len(cmdline) == 0 {
		return false
	}
	if state, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "stat")); err == nil {
		// The state is the field after the parenthesised command name.
		if i := bytes.LastIndexByte(state, ')'); i >= 0 && i+2 < len(state) && state[i+2] == 'Z' {
			return false
		}
	}
	got := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	return len(got) == len(p.Args) && strings.Join(got, "\x00") == strings.Join(p.Args, "\x00")
}

// Stop sends SIGTERM, waits up to grace for the process to go, then kills it.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.Name, p.PID, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
	}
	for i := 0; i < 50 && p.Alive(); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if p.Alive() {
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
	}
	return nil
}

// tail returns the last lines of the process's log, for error messages.
func (p *Process) tail(lines int) string {
	data, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
