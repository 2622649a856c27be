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
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// Which of a process's TCP connections carried a load: the bytes each has
// moved, from the kernel's TCP_INFO of the socket, before and after it.
// A connection's ports do not say what it is for; its traffic does. This
// is how the benchmark finds the one connection a tunnel rides on: the
// hub's connection to switchboard that switchboard took over for the
// agent, which looks like any other connection from the hub.

// ConnTraffic is one established TCP connection of a process and the bytes
// it has moved so far: received, and sent and acknowledged.
type ConnTraffic struct {
	Local, Remote netip.AddrPort
	Bytes         uint64
}

// ReadConnTraffic returns the established TCP connections of process pid,
// by socket inode. It reads each socket's TCP_INFO through a duplicate of
// the process's descriptor (pidfd_getfd, which needs the right to ptrace
// pid: root, or the process itself), closed at once.
func ReadConnTraffic(pid int) (map[uint64]ConnTraffic, error) {
	fds, err := socketFDs(pid)
	if err != nil {
		return nil, err
	}
	entries, err := tcpTables(pid)
	if err != nil {
		return nil, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open of pid %d: %w", pid, err)
	}
	defer func() { _ = unix.Close(pidfd) }()
	conns := map[uint64]ConnTraffic{}
	for _, e := range entries {
		fd, ok := fds[e.Inode]
		if !ok || e.State != tcpEstablished {
			continue
		}
		n, ok, err := socketBytes(pidfd, fd, e.Inode)
		if err != nil {
			return nil, fmt.Errorf("the TCP connection %s → %s of pid %d (fd %d): %w", e.Local, e.Remote, pid, fd, err)
		}
		if ok {
			conns[e.Inode] = ConnTraffic{Local: e.Local, Remote: e.Remote, Bytes: n}
		}
	}
	return conns, nil
}

// socketBytes reads the bytes moved by the socket that the process of
// pidfd holds as fd, if that descriptor is still the socket inode: ok is
// false when the process closed it since.
func socketBytes(pidfd, fd int, inode uint64) (n uint64, ok bool, err error) {
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if errors.Is(err, unix.EBADF) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer func() { _ = unix.Close(dup) }()
	var st unix.Stat_t
	if err := unix.Fstat(dup, &st); err != nil {
		return 0, false, err
	}
	if st.Ino != inode {
		return 0, false, nil // the number now names another file
	}
	info, err := unix.GetsockoptTCPInfo(dup, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, false, fmt.Errorf("TCP_INFO: %w", err)
	}
	return info.Bytes_received + info.Bytes_acked, true, nil
}

// ConnPair is a connection seen from one end: its local and remote address.
type ConnPair struct{ Local, Remote netip.AddrPort }

// EstablishedPairs returns the established TCP connections of process pid.
func EstablishedPairs(pid int) (map[ConnPair]bool, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return nil, err
	}
	entries, err := tcpTables(pid)
	if err != nil {
		return nil, err
	}
	pairs := map[ConnPair]bool{}
	for _, e := range entries {
		if e.State == tcpEstablished && inodes[e.Inode] {
			pairs[ConnPair{e.Local, e.Remote}] = true
		}
	}
	return pairs, nil
}

// OtherPeer names, in Carriers, connections whose other end is none of
// the processes looked at.
const OtherPeer = "others"

// Carriers are the connections of a process that carried a load, by the
// process at their other end.
type Carriers struct {
	// Conns counts them and Bytes is what they moved during the load.
	Conns map[string]int
	Bytes map[string]uint64
}

// FindCarriers compares a process's connections before and after a load
// and returns those that moved at least minBytes during it, each put under
// the name of the peer process that holds its other end (its local and
// remote addresses swapped), or under OtherPeer. A connection opened
// during the load counts all its bytes; one closed during it is gone.
func FindCarriers(before, after map[uint64]ConnTraffic, minBytes uint64, peers map[string]map[ConnPair]bool) Carriers {
	c := Carriers{Conns: map[string]int{}, Bytes: map[string]uint64{}}
	names := make([]string, 0, len(peers))
	for name := range peers {
		names = append(names, name)
	}
	slices.Sort(names) // a connection two peers claim goes to the first
	for inode, conn := range after {
		moved := conn.Bytes
		if was, ok := before[inode]; ok && was.Local == conn.Local && was.Remote == conn.Remote {
			moved -= min(was.Bytes, moved)
		}
		if moved < minBytes {
			continue
		}
		peer := OtherPeer
		for _, name := range names {
			if peers[name][ConnPair{Local: conn.Remote, Remote: conn.Local}] {
				peer = name
				break
			}
		}
		c.Conns[peer]++
		c.Bytes[peer] += moved
	}
	return c
}
