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
	"context"
	"encoding/json"
	"errors"
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
	"unsafe"
)

// helperEnv makes the test binary, started again, act as a helper process
// instead of running the tests.
const helperEnv = "TOPOLOGY_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "ignore-sigterm" {
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(m.Run())
}

// starts is how many processes each liveness loop starts.
const starts = 2000

// TestAliveAtOnceAfterStart starts a real binary and asks whether it is
// alive at once, starts times over: it must always be.
//
// cmd.Start returns while the child is still inside execve: the new
// program's name and memory are in place, its arguments not yet, and
// /proc/<pid>/cmdline reads empty. Loading the rest of the binary widens
// that moment when its pages are not in the page cache, as on a machine's
// first make local-up, when a running etcd was reported as exited. The
// test starts a copy of sleep(1) whose pages it drops from the cache
// before every start.
func TestAliveAtOnceAfterStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		// check is the process as the liveness check sees it.
		check func(*Process) *Process
	}{
		{"started by this program", func(p *Process) *Process { return p }},
		// What a state file holds, built directly: recorded would take
		// longer than the moment this test is about.
		{"read back from a state file", func(p *Process) *Process {
			return &Process{Name: p.Name, PID: p.PID, StartTime: p.StartTime, Args: p.Args, Log: p.Log}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sleep := uncachedCopy(t, sleepBinary(t), dir)
			var dead, inExec, notReaped int
			for i := 0; i < starts; i++ {
				dropFromPageCache(t, sleep)
				p := mustStart(t, dir, "sleep", sleep, "600")
				if !tc.check(p).Alive() {
					dead++
				}
				// Still inside execve after the check: the check
				// ran inside it too.
				if cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "cmdline")); err == nil && len(cmdline) == 0 {
					inExec++
				}
				if err := p.Stop(stopGrace); err != nil {
					t.Fatal(err)
				}
				// Stop returns once the reaper has seen the exit.
				select {
				case <-p.child.Load().exited:
				default:
					// Stop left it running: end it here, not with Stop.
					notReaped++
					_ = p.child.Load().proc.Kill()
					mustWaitExit(t, p)
				}
				if tc.check(p).Alive() {
					t.Fatalf("%s (pid %d) is alive after Stop and its exit", p.Name, p.PID)
				}
			}
			t.Logf("%d of %d processes were still inside execve after the check", inExec, starts)
			if dead > 0 || notReaped > 0 {
				t.Errorf("of %d processes just started, %d read as dead, and Stop returned before %d had exited", starts, dead, notReaped)
			}
		})
	}
}

// uncachedCopy copies a binary into dir and writes it to disk, so that
// dropFromPageCache can drop its pages.
func uncachedCopy(t *testing.T, bin, dir string) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(bin))
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// dropFromPageCache asks the kernel to drop the file's clean, unmapped
// pages from the page cache (posix_fadvise POSIX_FADV_DONTNEED), so that
// the next execve reads them from disk. On tmpfs it does nothing.
func dropFromPageCache(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	const fadvDontNeed = 4
	if _, _, errno := syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, fadvDontNeed, 0, 0); errno != 0 {
		t.Fatalf("posix_fadvise(%s, POSIX_FADV_DONTNEED): %v", path, errno)
	}
}

// TestAliveFromProc judges real processes read back from a state file.
func TestAliveFromProc(t *testing.T) {
	sleep := sleepBinary(t)
	dir := t.TempDir()
	p := mustStart(t, dir, "sleep", sleep, "600")
	t.Cleanup(func() { _ = p.Stop(stopGrace) })

	running := recorded(t, p)
	if !running.Alive() {
		t.Errorf("a running process read back from its record is not alive")
	}
	otherStart := recorded(t, p)
	otherStart.StartTime++
	if otherStart.Alive() {
		t.Errorf("a process with the recorded pid but another start time (a recycled pid) is alive")
	}
	otherArgs := recorded(t, p)
	otherArgs.Args = []string{sleep, "601"}
	if otherArgs.Alive() {
		t.Errorf("a process with the recorded pid but another command line is alive")
	}
	legacy := recorded(t, p)
	legacy.StartTime = 0
	if !legacy.Alive() {
		t.Errorf("a running process from a record without a start time is not alive")
	}

	zombie := startZombie(t, sleep)
	if zombie.Alive() {
		t.Errorf("a zombie (pid %d) is alive", zombie.PID)
	}

	if err := p.Stop(stopGrace); err != nil {
		t.Fatal(err)
	}
	if running.Alive() || legacy.Alive() {
		t.Errorf("a process read back from its record is alive after it exited and was reaped")
	}
}

// startZombie starts a process that exits at once and is not reaped until
// the test ends, and returns its record.
func startZombie(t *testing.T, sleep string) *Process {
	t.Helper()
	cmd := exec.Command(sleep, "0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stat, err := readStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// waitid with WNOWAIT returns once the child has exited and leaves it
	// a zombie.
	const pPID = 1
	var info [128]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(cmd.Process.Pid), uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno == 0 {
			break
		}
		if errno != syscall.EINTR {
			t.Fatalf("waitid: %v", errno)
		}
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	if got, err := readStat(cmd.Process.Pid); err != nil || got.state != 'Z' {
		t.Fatalf("pid %d should be a zombie: state %q, %v", cmd.Process.Pid, got.state, err)
	}
	return &Process{Name: "zombie", PID: cmd.Process.Pid, StartTime: stat.startTime, Args: []string{sleep, "0"}}
}

func TestAliveInProc(t *testing.T) {
	args := []string{"/bin/etcd", "--name=local"}
	cmdline := []byte("/bin/etcd\x00--name=local\x00")
	const start = 12345
	for _, tc := range []struct {
		name      string
		startTime uint64 // recorded
		stat      procStat
		cmdline   []byte
		want      bool
	}{
		{"running", start, procStat{state: 'S', startTime: start}, cmdline, true},
		{"running, no recorded start time", 0, procStat{state: 'R', startTime: start}, cmdline, true},
		{"inside execve: empty command line", start, procStat{state: 'R', startTime: start}, nil, true},
		{"empty command line, no recorded start time", 0, procStat{state: 'R', startTime: start}, nil, false},
		{"recycled pid", start, procStat{state: 'S', startTime: start + 1}, cmdline, false},
		{"recycled pid inside execve", start, procStat{state: 'S', startTime: start + 1}, nil, false},
		{"zombie", start, procStat{state: 'Z', startTime: start}, nil, false},
		{"dead", start, procStat{state: 'X', startTime: start}, nil, false},
		{"exiting", start, procStat{state: 'R', flags: 0x400100 | pfExiting, startTime: start}, nil, false},
		{"kernel thread", start, procStat{state: 'S', flags: 0x208040, startTime: start}, nil, false},
		{"kernel thread, no recorded start time", 0, procStat{state: 'I', flags: 0x4208060, startTime: 3}, nil, false},
		{"other arguments", start, procStat{state: 'S', startTime: start}, []byte("/bin/etcd\x00--name=other\x00"), false},
		{"more arguments", start, procStat{state: 'S', startTime: start}, []byte("/bin/etcd\x00--name=local\x00-v\x00"), false},
		{"fewer arguments", start, procStat{state: 'S', startTime: start}, []byte("/bin/etcd\x00"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Process{Name: "etcd", PID: 42, StartTime: tc.startTime, Args: args}
			if got := p.aliveInProc(tc.stat, tc.cmdline); got != tc.want {
				t.Errorf("alive = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want procStat
		err  bool
	}{
		{
			name: "kernel thread",
			line: "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 22 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			want: procStat{state: 'S', flags: 2129984, startTime: 22},
		},
		{
			name: "command name with spaces and parentheses",
			line: "4242 (a) b (c)) Z 1 4242 4242 0 -1 4194316 95 0 0 0 1 2 0 0 20 0 1 0 987654 0 0 18446744073709551615\n",
			want: procStat{state: 'Z', flags: 4194316, startTime: 987654},
		},
		{name: "no command name", line: "4242 S 1 4242", err: true},
		{name: "cut short", line: "4242 (sleep) S 1 4242 4242 0 -1 4194560", err: true},
		{name: "flags not a number", line: "4242 (sleep) S 1 4242 4242 0 -1 x 95 0 0 0 1 2 0 0 20 0 1 0 987654 0", err: true},
		{name: "start time not a number", line: "4242 (sleep) S 1 4242 4242 0 -1 4194560 95 0 0 0 1 2 0 0 20 0 1 0 -1 0", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.line))
			if tc.err {
				if err == nil {
					t.Fatalf("parsed %q as %+v, want an error", tc.line, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// This process's own line.
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseStat(self); err != nil || got.state == 'Z' || got.flags&pfKthread != 0 || got.startTime == 0 {
		t.Errorf("/proc/self/stat %q: got %+v, %v", self, got, err)
	}
}

// TestStopEscalates stops a process that ignores SIGTERM: Stop kills it
// after the grace period and returns once it is gone, whether this program
// started it or read it from a state file.
func TestStopEscalates(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, fromState := range []bool{false, true} {
		t.Run(fmt.Sprintf("read back from a state file: %v", fromState), func(t *testing.T) {
			dir := t.TempDir()
			p, err := startProcess("stubborn", dir, []string{self}, helperEnv+"=ignore-sigterm")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Kill() })
			waitForLog(t, p, "ready")
			stop := p
			if fromState {
				stop = recorded(t, p)
			}
			if err := stop.Stop(200 * time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if stop.Alive() {
				t.Fatalf("alive after Stop")
			}
			mustWaitExit(t, p)
			status := p.child.Load().state.Sys().(syscall.WaitStatus)
			if !status.Signaled() || status.Signal() != syscall.SIGKILL {
				t.Errorf("ended with %v, want SIGKILL", p.child.Load().state)
			}
		})
	}
}

// TestStopOfExited stops processes that no longer run: nothing to do, no
// error, no signal to whatever has the pid now.
func TestStopOfExited(t *testing.T) {
	sleep := sleepBinary(t)
	p := mustStart(t, t.TempDir(), "sleep", sleep, "0")
	mustWaitExit(t, p)
	if p.Alive() {
		t.Fatal("alive after it exited")
	}
	if err := p.Stop(stopGrace); err != nil {
		t.Errorf("Stop of a started process that exited: %v", err)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill of a started process that exited: %v", err)
	}
	r := recorded(t, p)
	if err := r.Stop(stopGrace); err != nil {
		t.Errorf("Stop of a recorded process that exited: %v", err)
	}
	if code, ok := p.WaitExit(0); !ok || code != 0 {
		t.Errorf("exit code %d (known: %v), want 0", code, ok)
	}
	if got := p.exitStatus(); got != "exit status 0" {
		t.Errorf("exit status %q", got)
	}
}

// TestRestartProcess stops a recorded process and starts it again: the
// state knows the new process, here and in its file.
func TestRestartProcess(t *testing.T) {
	sleep := sleepBinary(t)
	s := &State{RunDir: t.TempDir()}
	if err := os.MkdirAll(s.LogDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	p := mustStart(t, s.LogDir(), "sleep", sleep, "600")
	s.Processes = []*Process{p}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	first := p.PID
	if err := s.StopProcess("sleep"); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Fatal("alive after StopProcess")
	}
	if err := s.RestartProcess("sleep"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(stopGrace) })
	if !p.Alive() || p.PID == first {
		t.Fatalf("after RestartProcess: alive %v, pid %d (was %d)", p.Alive(), p.PID, first)
	}
	if err := s.RestartProcess("sleep"); err == nil || !strings.Contains(err.Error(), "still runs") {
		t.Errorf("RestartProcess of a running process: %v, want an error that it still runs", err)
	}
	loaded, err := Load(s.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Processes[0]; got.PID != p.PID || got.StartTime != p.StartTime || !got.Alive() {
		t.Errorf("the state file records pid %d started at %d (alive: %v), want pid %d started at %d", got.PID, got.StartTime, got.Alive(), p.PID, p.StartTime)
	}
}

// TestDown stops what a state file records, by pid, as make local-down
// does from another process.
func TestDown(t *testing.T) {
	sleep := sleepBinary(t)
	s := &State{RunDir: filepath.Join(t.TempDir(), "run")}
	if err := os.MkdirAll(s.LogDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second"} {
		p := mustStart(t, s.LogDir(), name, sleep, "600")
		t.Cleanup(func() { _ = p.Stop(stopGrace) })
		s.Processes = append(s.Processes, p)
	}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := Down(s.RunDir, &out); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Processes {
		mustWaitExit(t, p)
		status := p.child.Load().state.Sys().(syscall.WaitStatus)
		if !status.Signaled() || status.Signal() != syscall.SIGTERM || !strings.Contains(out.String(), fmt.Sprintf("Stopping %s (pid %d)", p.Name, p.PID)) {
			t.Errorf("%s ended with %v, want SIGTERM; Down printed:\n%s", p.Name, p.child.Load().state, out.String())
		}
	}
	if _, err := os.Stat(s.RunDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Down left %s: %v", s.RunDir, err)
	}
}

// TestWaitForReportsExit: a process that exits while it starts fails the
// wait at once, with how it ended and the end of its log.
func TestWaitForReportsExit(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("this test starts sh(1): %v", err)
	}
	p := mustStart(t, t.TempDir(), "failing", sh, "-c", "echo cannot listen; exit 3")
	err = waitFor(context.Background(), p, "failing", func(context.Context) error { return errors.New("not ready") })
	if err == nil || !strings.Contains(err.Error(), "failing exited (exit status 3) while starting") || !strings.Contains(err.Error(), "cannot listen") {
		t.Errorf("got %v, want that it exited with status 3, and its log", err)
	}
}

func TestStartProcessOfMissingBinary(t *testing.T) {
	_, err := startProcess("missing", t.TempDir(), []string{filepath.Join(t.TempDir(), "no-such-binary")})
	if err == nil || !strings.Contains(err.Error(), "starting missing") {
		t.Errorf("got %v, want an error that names the process", err)
	}
}

func sleepBinary(t *testing.T) string {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("these tests start sleep(1): %v", err)
	}
	return sleep
}

func mustStart(t *testing.T, dir, name string, args ...string) *Process {
	t.Helper()
	p, err := startProcess(name, dir, args)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// recorded is p as another program reads it from a state file.
func recorded(t *testing.T, p *Process) *Process {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	r := &Process{}
	if err := json.Unmarshal(data, r); err != nil {
		t.Fatal(err)
	}
	if r.child.Load() != nil || r.PID != p.PID || r.StartTime != p.StartTime {
		t.Fatalf("read back %+v from %s", r, data)
	}
	return r
}

// mustWaitExit waits for a process this test started to exit; the test's
// own deadline bounds the wait.
func mustWaitExit(t *testing.T, p *Process) {
	t.Helper()
	<-p.child.Load().exited
}

// waitForLog waits until the process has written want to its log, or fails
// if it exits first; the test's own deadline bounds the wait.
func waitForLog(t *testing.T, p *Process, want string) {
	t.Helper()
	for !strings.Contains(p.tail(5), want) {
		if !p.Alive() {
			t.Fatalf("%s exited (%s) before it wrote %q:\n%s", p.Name, p.exitStatus(), want, p.tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
