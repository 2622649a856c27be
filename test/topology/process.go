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
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Process is a process the topology started, as recorded in its state file.
type Process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// StartTime is when the process began, in clock ticks after boot
	// (field 22 of /proc/<pid>/stat). With PID it names one process: a
	// recycled pid has another start time. Zero in state files written
	// before it was recorded.
	StartTime uint64 `json:"startTime,omitempty"`
	// Args is the command line of the binary, as /proc/<pid>/cmdline
	// shows it once the process runs.
	Args []string `json:"args"`
	// NetNS is the network namespace the process runs in, empty for the
	// machine's own. Such a process is started as ip netns exec NetNS
	// Args..., and ip execs the binary in the same process: the pid stays,
	// and the command line becomes Args.
	NetNS string `json:"netns,omitempty"`
	Log   string `json:"log"`

	// child is set for a process this program started, nil for one read
	// from a state file.
	child atomic.Pointer[child]
}

// child is a process this program started, and its reaper.
type child struct {
	proc *os.Process
	// exited is closed when the process has exited and been reaped;
	// state is then its exit status.
	exited chan struct{}
	state  *os.ProcessState
}

// Flags of a task, field 9 of /proc/<pid>/stat (include/linux/sched.h).
const (
	// pfExiting: the task is exiting; its memory, and with it the
	// command line, may be gone.
	pfExiting = 0x00000004
	// pfKthread: a kernel thread, whose command line is always empty.
	pfKthread = 0x00200000
)

// killWait bounds the wait for a process to go after SIGKILL.
const killWait = 5 * time.Second

// startProcess starts a binary in its own session, so that it outlives the
// command that started it and a terminal's signals do not reach it. Its
// output goes to logDir/name.log.
func startProcess(name, logDir string, args []string, env ...string) (*Process, error) {
	return startProcessIn("", name, logDir, args, env...)
}

// startProcessIn is startProcess inside the network namespace netns, or in
// the machine's own when netns is empty.
func startProcessIn(netns, name, logDir string, args []string, env ...string) (*Process, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }()

	command := args
	if netns != "" {
		command = netnsCommand(netns, args)
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(baseEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	// Not reaped yet, so the pid is still this child's, exited or not.
	stat, err := readStat(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("starting %s: reading its start time: %w", name, err)
	}
	p := &Process{Name: name, PID: cmd.Process.Pid, StartTime: stat.startTime, Args: args, NetNS: netns, Log: logPath}
	c := &child{proc: cmd.Process, exited: make(chan struct{})}
	p.child.Store(c)
	// Reap the child when it exits while this process still runs, so that
	// it does not linger as a zombie, and so that Alive and Stop know.
	go func() {
		_ = cmd.Wait()
		c.state = cmd.ProcessState
		close(c.exited)
	}()
	return p, nil
}

// adopt makes p the process that started describes, after a restart.
func (p *Process) adopt(started *Process) {
	p.PID = started.PID
	p.StartTime = started.StartTime
	p.child.Store(started.child.Load())
}

// WaitExit waits up to timeout for a process this program started to exit
// and returns its exit code (-1 when a signal ended it). ok is false when it
// still runs, or when this program did not start it and cannot know.
func (p *Process) WaitExit(timeout time.Duration) (code int, ok bool) {
	c := p.child.Load()
	if c == nil {
		return 0, false
	}
	// Looked at first, so that an exit already seen wins over a timeout
	// of 0.
	select {
	case <-c.exited:
		return c.state.ExitCode(), true
	default:
	}
	select {
	case <-c.exited:
		return c.state.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// exitStatus describes how a process this program started ended ("exit
// status 1", "signal: killed"), or is empty.
func (p *Process) exitStatus() string {
	if c := p.child.Load(); c != nil {
		select {
		case <-c.exited:
			return c.state.String()
		default:
		}
	}
	return ""
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

// Alive says whether the process still runs.
//
// For a process this program started, its reaper knows: alive until it
// has exited. /proc cannot tell for a moment after the start: cmd.Start
// returns once execve has closed the close-on-exec files, before the new
// program's arguments are in place, and /proc/<pid>/cmdline reads empty
// until they are.
//
// For a process read from a state file, /proc decides: see aliveInProc.
func (p *Process) Alive() bool {
	if c := p.child.Load(); c != nil {
		select {
		case <-c.exited:
			return false
		default:
			return true
		}
	}
	stat, err := readStat(p.PID)
	if err != nil {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "cmdline"))
	if err != nil {
		return false
	}
	return p.aliveInProc(stat, cmdline)
}

// aliveInProc says whether the task that /proc/<pid>/stat and cmdline
// describe is the recorded process, still running: not a zombie, not
// exiting, not a kernel thread, started when the recorded one was (a
// recycled pid was not), and running the recorded command line. An empty
// command line counts when the start time matches: the process is then
// inside execve, before its arguments are in place. Without a recorded
// start time, an empty command line cannot be told from another program's
// and does not count. A process in a network namespace also counts while
// its command line is still that of ip netns exec, before ip has exec'd
// the binary.
func (p *Process) aliveInProc(stat procStat, cmdline []byte) bool {
	switch {
	case stat.state == 'Z' || stat.state == 'X' || stat.state == 'x':
		return false
	case stat.flags&(pfExiting|pfKthread) != 0:
		return false
	case p.StartTime != 0 && stat.startTime != p.StartTime:
		return false
	case len(cmdline) == 0:
		return p.StartTime != 0
	}
	got := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	if slices.Equal(got, p.Args) {
		return true
	}
	return p.NetNS != "" && len(got) > 4 && filepath.Base(got[0]) == "ip" &&
		slices.Equal(got[1:4], []string{"netns", "exec", p.NetNS}) && slices.Equal(got[4:], p.Args)
}

// procStat is what Alive needs of /proc/<pid>/stat.
type procStat struct {
	state     byte
	flags     uint64
	startTime uint64
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

// parseStat reads the state, flags and start time, fields 3, 9 and 22 of a
// stat line (proc_pid_stat(5)); the command name (field 2) is in
// parentheses and may hold spaces and parentheses.
func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("unexpected stat line %q", data)
	}
	// fields[0] is field 3.
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("unexpected stat line %q", data)
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("unexpected flags in stat line %q: %w", data, err)
	}
	startTime, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("unexpected start time in stat line %q: %w", data, err)
	}
	return procStat{state: fields[0][0], flags: flags, startTime: startTime}, nil
}

// Stop sends SIGTERM, waits up to grace for the process to go, then kills
// it. It returns once the process is gone; a process this program started
// has then been reaped.
func (p *Process) Stop(grace time.Duration) error {
	if c := p.child.Load(); c != nil {
		if err := c.proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stopping %s (pid %d): %w", p.Name, p.PID, err)
		}
		select {
		case <-c.exited:
			return nil
		case <-time.After(grace):
		}
		return p.Kill()
	}
	proc, ok, err := p.find()
	if err != nil || !ok {
		return err
	}
	defer func() { _ = proc.Release() }()
	if err := proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s (pid %d): %w", p.Name, p.PID, err)
	}
	if p.waitGone(grace) {
		return nil
	}
	if err := proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
	}
	if !p.waitGone(killWait) {
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
	}
	return nil
}

// Kill ends the process with SIGKILL, with no time to shut down, and
// returns once it is gone.
func (p *Process) Kill() error {
	if c := p.child.Load(); c != nil {
		if err := c.proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
		}
		select {
		case <-c.exited:
			return nil
		case <-time.After(killWait):
			return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
		}
	}
	proc, ok, err := p.find()
	if err != nil || !ok {
		return err
	}
	defer func() { _ = proc.Release() }()
	if err := proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
	}
	if !p.waitGone(killWait) {
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
	}
	return nil
}

// find returns a handle on a process read from a state file, when it
// still runs. The handle (a pidfd) is taken before the check, so a signal
// sent through it cannot reach another process that got the pid since.
func (p *Process) find() (*os.Process, bool, error) {
	proc, err := os.FindProcess(p.PID)
	if err != nil {
		return nil, false, fmt.Errorf("finding %s (pid %d): %w", p.Name, p.PID, err)
	}
	if !p.Alive() {
		_ = proc.Release()
		return nil, false, nil
	}
	return proc, true, nil
}

// waitGone polls a process read from a state file until it no longer runs,
// for up to timeout; this program cannot wait for it.
func (p *Process) waitGone(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for p.Alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
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
