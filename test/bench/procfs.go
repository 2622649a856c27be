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

package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// What the benchmark reads about switchboard's process comes from /proc, so
// that it needs nothing from switchboard itself (the topology runs it with
// --profiling=false).

// RSS returns the resident set size (VmRSS) of a process, in bytes.
func RSS(pid int) (int64, error) {
	return statusKB(pid, "VmRSS")
}

// statusKB reads one "Name:   123 kB" line of /proc/<pid>/status, in bytes.
func statusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	return parseStatusKB(data, field)
}

func parseStatusKB(status []byte, field string) (int64, error) {
	prefix := []byte(field + ":")
	for line := range bytes.Lines(status) {
		if !bytes.HasPrefix(line, prefix) {
			continue
		}
		fields := strings.Fields(string(line[len(prefix):]))
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected %s line %q", field, line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected %s line %q: %w", field, line, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s in the process status", field)
}

// SettledRSS is the median of a few RSS samples taken over about a second,
// so that one sample caught during a garbage collection does not count.
func SettledRSS(pid int) (int64, error) {
	const samples = 5
	values := make([]int64, 0, samples)
	for i := range samples {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		v, err := RSS(pid)
		if err != nil {
			return 0, err
		}
		values = append(values, v)
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	return values[samples/2], nil
}

// RSSSampler polls a process's RSS at a fixed interval and keeps the peak.
type RSSSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	peak int64
	err  error
}

// StartRSSSampler starts polling pid every interval.
func StartRSSSampler(pid int, interval time.Duration) *RSSSampler {
	s := &RSSSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go runEvery(interval, s.stop, s.done, s.sample)
	return s
}

func (s *RSSSampler) sample() {
	v, err := RSS(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.peak = max(s.peak, v)
}

// Stop takes a last sample, stops polling and returns the peak.
func (s *RSSSampler) Stop() (int64, error) {
	close(s.stop)
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.err
}

// OpenFilesLimit is the soft "Max open files" of a process, from /proc/<pid>/limits.
func OpenFilesLimit(pid int) (string, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "limits"))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if fields := strings.Fields(rest); len(fields) >= 1 {
				return fields[0], nil
			}
		}
	}
	return "", fmt.Errorf("no open files limit in /proc/%d/limits", pid)
}

// RaiseOpenFilesLimit raises this process's soft open-files limit to its
// hard limit (Go does that at start-up too; this makes it explicit) and
// returns the new soft limit.
func RaiseOpenFilesLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}

// EstablishedConns counts the established TCP connections that process pid
// holds to remotePort: the sockets among its file descriptors whose entry in
// /proc/<pid>/net/tcp{,6} is ESTABLISHED with that remote port.
func EstablishedConns(pid, remotePort int) (int, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return 0, err
	}
	count := 0
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "net", table))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return 0, err
		}
		n, err := countEstablished(data, remotePort, inodes)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/net/%s: %w", pid, table, err)
		}
		count += n
	}
	return count, nil
}

// socketInodes returns the inodes of the sockets among a process's open
// files.
func socketInodes(pid int) (map[uint64]bool, error) {
	fds, err := socketFDs(pid)
	if err != nil {
		return nil, err
	}
	inodes := make(map[uint64]bool, len(fds))
	for inode := range fds {
		inodes[inode] = true
	}
	return inodes, nil
}

// socketFDs returns the sockets among a process's open files: their
// /proc/<pid>/fd links read "socket:[<inode>]". It maps each inode to the
// descriptor's number.
func socketFDs(pid int) (map[uint64]int, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	fds := make(map[uint64]int, len(entries))
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if rest, ok := strings.CutPrefix(target, "socket:["); ok {
			if inode, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64); err == nil {
				fds[inode] = fd
			}
		}
	}
	return fds, nil
}

// tcpEstablished is the state code of an established connection in /proc/net/tcp.
const tcpEstablished = "01"

// tcpEntry is one socket of a /proc/net/tcp or tcp6 table.
type tcpEntry struct {
	Local, Remote netip.AddrPort
	// State is the hex code of the TCP state: tcpEstablished for an
	// established connection.
	State string
	Inode uint64
}

// parseTCPTable reads a /proc/net/tcp or tcp6 table. A line reads
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
//
// with addresses as hex IP:port, the IP in 32-bit words of the machine's
// byte order. IPv4 addresses mapped into IPv6 come out as IPv4, so that
// the two ends of a connection compare equal whichever table they are in.
func parseTCPTable(table []byte) ([]tcpEntry, error) {
	var entries []tcpEntry
	scanner := bufio.NewScanner(bytes.NewReader(table))
	first := true
	for scanner.Scan() {
		if first { // the header
			first = false
			continue
		}
		fields := strings.Fields(scanner.Text())
		if len(fields) < 10 {
			continue
		}
		local, err := parseProcAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("unexpected local address %q: %w", fields[1], err)
		}
		remote, err := parseProcAddr(fields[2])
		if err != nil {
			return nil, fmt.Errorf("unexpected remote address %q: %w", fields[2], err)
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("unexpected inode %q: %w", fields[9], err)
		}
		entries = append(entries, tcpEntry{Local: local, Remote: remote, State: fields[3], Inode: inode})
	}
	return entries, scanner.Err()
}

// parseProcAddr reads an address of /proc/net/tcp{,6}: 8 or 32 hex digits
// of IP, in 32-bit words each in the machine's byte order, a colon and 4
// hex digits of port.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, errors.New("no port")
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if len(ipHex) != 8 && len(ipHex) != 32 {
		return netip.AddrPort{}, fmt.Errorf("an IP of %d hex digits", len(ipHex))
	}
	ip := make([]byte, 0, 16)
	for word := range len(ipHex) / 8 {
		v, err := strconv.ParseUint(ipHex[8*word:8*word+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, err
		}
		ip = binary.NativeEndian.AppendUint32(ip, uint32(v))
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// tcpTables reads the entries of both TCP tables of process pid's network
// namespace.
func tcpTables(pid int) ([]tcpEntry, error) {
	var entries []tcpEntry
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "net", table))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		e, err := parseTCPTable(data)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/net/%s: %w", pid, table, err)
		}
		entries = append(entries, e...)
	}
	return entries, nil
}

// countEstablished counts the entries of a /proc/net/tcp table that are
// established connections to remotePort owned by one of inodes.
func countEstablished(table []byte, remotePort int, inodes map[uint64]bool) (int, error) {
	entries, err := parseTCPTable(table)
	if err != nil {
		return 0, err
	}
	count := 0
	for _, e := range entries {
		if e.State == tcpEstablished && int(e.Remote.Port()) == remotePort && inodes[e.Inode] {
			count++
		}
	}
	return count, nil
}

// ConnSampler polls the number of connections a process holds to a port.
type ConnSampler struct {
	pid, port int
	stop      chan struct{}
	done      chan struct{}

	mu        sync.Mutex
	peak, end int
	err       error
}

// StartConnSampler starts polling every interval.
func StartConnSampler(pid, port int, interval time.Duration) *ConnSampler {
	s := &ConnSampler{pid: pid, port: port, stop: make(chan struct{}), done: make(chan struct{})}
	go runEvery(interval, s.stop, s.done, s.sample)
	return s
}

func (s *ConnSampler) sample() {
	n, err := EstablishedConns(s.pid, s.port)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.peak = max(s.peak, n)
	s.end = n
}

// Stop takes a last sample and returns the peak and the last count.
func (s *ConnSampler) Stop() (peak, last int, err error) {
	close(s.stop)
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.end, s.err
}

// CountProcesses counts the running processes whose command name is comm,
// leaving out the given pids: other kube-apiservers on the machine are a
// sign that the numbers are noisy.
func CountProcesses(comm string, except map[int]bool) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || except[pid] {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(data)) == comm {
			n++
		}
	}
	return n
}

// IOCounters are the bytes a process has read and written through system
// calls (rchar and wchar in /proc/<pid>/io), sockets included.
type IOCounters struct{ Read, Written int64 }

// ReadIOCounters reads a process's I/O counters.
func ReadIOCounters(pid int) (IOCounters, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
	if err != nil {
		return IOCounters{}, err
	}
	var c IOCounters
	found := 0
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var target *int64
		switch name {
		case "rchar":
			target = &c.Read
		case "wchar":
			target = &c.Written
		default:
			continue
		}
		if *target, err = strconv.ParseInt(strings.TrimSpace(value), 10, 64); err != nil {
			return c, fmt.Errorf("/proc/%d/io: %w", pid, err)
		}
		found++
	}
	if found != 2 {
		return c, fmt.Errorf("/proc/%d/io has no rchar and wchar", pid)
	}
	return c, nil
}

// clockTicks is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTicks = 100

// CPUTime is the user plus system CPU time a process has used, from
// /proc/<pid>/stat ("self" for this process when pid is 0).
func CPUTime(pid int) (time.Duration, error) {
	name := "self"
	if pid != 0 {
		name = strconv.Itoa(pid)
	}
	data, err := os.ReadFile(filepath.Join("/proc", name, "stat"))
	if err != nil {
		return 0, err
	}
	return parseCPUTime(data)
}

// parseCPUTime reads utime and stime, fields 14 and 15 of a stat line; the
// command name (field 2) is in parentheses and may hold spaces.
func parseCPUTime(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected stat line %q", stat)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (the state), so utime is fields[11].
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected stat line %q", stat)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected stat line %q: %w", stat, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// CPUSnapshot is the CPU time of several processes at one moment.
type CPUSnapshot map[string]time.Duration

// TakeCPUSnapshot reads the CPU time of each named pid (0 is this process).
func TakeCPUSnapshot(pids map[string]int) (CPUSnapshot, error) {
	s := CPUSnapshot{}
	for name, pid := range pids {
		t, err := CPUTime(pid)
		if err != nil {
			return nil, fmt.Errorf("CPU time of %s (pid %d): %w", name, pid, err)
		}
		s[name] = t
	}
	return s, nil
}

// Since is the CPU time each process used between earlier and s.
func (s CPUSnapshot) Since(earlier CPUSnapshot) CPUSnapshot {
	d := CPUSnapshot{}
	for name, t := range s {
		d[name] = t - earlier[name]
	}
	return d
}

// runEvery calls fn every interval until stop closes, then closes done.
func runEvery(interval time.Duration, stop <-chan struct{}, done chan<- struct{}, fn func()) {
	defer close(done)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			fn()
		}
	}
}
