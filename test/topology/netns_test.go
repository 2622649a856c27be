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
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// These tests make real network namespaces and veth pairs, as root.

// testNetNS makes the network namespace and veth pair of the index-th
// isolated member named name of runDir, as Up does, and deletes them when
// the test ends.
func testNetNS(t *testing.T, runDir, name string, index int) netnsLink {
	t.Helper()
	subnet, err := freeVethSubnet(runDir, index)
	if err != nil {
		t.Fatal(err)
	}
	host, ns := vethNames(runDir, index)
	link := netnsLink{netns: netnsName(runDir, name), hostVeth: host, nsVeth: ns, subnet: subnet}
	t.Cleanup(func() {
		if err := removeNetNS(runDir, io.Discard); err != nil {
			t.Error(err)
		}
	})
	if err := createNetNS(link); err != nil {
		t.Fatal(err)
	}
	return link
}

// listenIn listens on address inside the network namespace ns and accepts
// until the test ends, answering each connection with greeting.
func listenIn(t *testing.T, ns, address, greeting string) net.Listener {
	t.Helper()
	l, err := inNetNS(ns, func() (net.Listener, error) { return net.Listen("tcp", address) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go serveGreeting(l, greeting)
	return l
}

func serveGreeting(l net.Listener, greeting string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, greeting)
		_ = c.Close()
	}
}

// freePort is a port free in the machine's namespace a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(ports[0])
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	defer func() { _ = c.Close() }()
	data, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestNetNSDialer: a connection through the dialer reaches a listener on
// 127.0.0.1 inside the namespace; the same dial from the machine's
// namespace does not.
func TestNetNSDialer(t *testing.T) {
	runDir := t.TempDir()
	link := testNetNS(t, runDir, "edge1", 0)
	address := "127.0.0.1:" + freePort(t)
	listenIn(t, link.netns, address, "hello from inside")
	ctx := context.Background()

	t.Run("dialer", func(t *testing.T) {
		c, err := NetNSDialer(link.netns)(ctx, "tcp", address)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, c); got != "hello from inside" {
			t.Errorf("read %q through the dialer", got)
		}
	})

	t.Run("cluster", func(t *testing.T) {
		c := &Cluster{Name: "edge1", NetNS: link.netns}
		conn, err := c.DialContext(ctx, "tcp", address)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, conn); got != "hello from inside" {
			t.Errorf("read %q through Cluster.DialContext", got)
		}
	})

	t.Run("from the machine's namespace", func(t *testing.T) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", address)
		if err == nil {
			_ = c.Close()
			t.Fatalf("a plain dial to %s connected: it is not the namespace's own loopback", address)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("plain dial: %v, want connection refused", err)
		}
	})

	t.Run("missing namespace", func(t *testing.T) {
		_, err := NetNSDialer(netnsName(runDir, "none"))(ctx, "tcp", address)
		if err == nil || !strings.Contains(err.Error(), "opening network namespace") {
			t.Errorf("got %v, want an error that names the namespace", err)
		}
	})
}

// TestClusterClientInNetNS: the clientset of an isolated member talks to
// an API server that serves on 127.0.0.1 of its namespace.
func TestClusterClientInNetNS(t *testing.T) {
	runDir := t.TempDir()
	link := testNetNS(t, runDir, "edge1", 0)
	address := "127.0.0.1:" + freePort(t)
	l, err := inNetNS(link.netns, func() (net.Listener, error) { return net.Listen("tcp", address) })
	if err != nil {
		t.Fatal(err)
	}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"gitVersion":"v1.37.2-in-netns"}`)
	}), ReadHeaderTimeout: time.Minute}
	go func() { _ = server.Serve(l) }()
	t.Cleanup(func() { _ = server.Close() })

	kubeconfig := filepath.Join(runDir, "edge1.kubeconfig")
	if err := clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"edge1": {Server: "http://" + address}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"edge1": {}},
		Contexts:       map[string]*clientcmdapi.Context{"edge1": {Cluster: "edge1", AuthInfo: "edge1"}},
		CurrentContext: "edge1",
	}, kubeconfig); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		netns   string
		wantErr bool
	}{
		{"isolated member", link.netns, false},
		{"the same kubeconfig without the namespace", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{Name: "edge1", Kubeconfig: kubeconfig, NetNS: tc.netns}
			client, err := c.Client()
			if err != nil {
				t.Fatal(err)
			}
			v, err := client.Discovery().ServerVersion()
			switch {
			case tc.wantErr && err == nil:
				t.Errorf("reached %s from the machine's namespace: version %s", address, v.GitVersion)
			case !tc.wantErr && err != nil:
				t.Error(err)
			case !tc.wantErr && v.GitVersion != "v1.37.2-in-netns":
				t.Errorf("version %q", v.GitVersion)
			}
		})
	}
}

// TestCheckIsolated: it passes only when the API server's port accepts
// connections inside the namespace and nowhere the machine's namespace can
// dial.
func TestCheckIsolated(t *testing.T) {
	runDir := t.TempDir()
	link := testNetNS(t, runDir, "edge1", 0)
	_, nsIP := vethAddrs(link.subnet)
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		// listen starts what listens on port, and returns where.
		listen  func(t *testing.T, port string)
		wantErr string
	}{
		{
			name:   "loopback of the namespace",
			listen: func(t *testing.T, port string) { listenIn(t, link.netns, "127.0.0.1:"+port, "") },
		},
		{
			name:    "every address of the namespace",
			listen:  func(t *testing.T, port string) { listenIn(t, link.netns, ":"+port, "") },
			wantErr: "a connection to " + nsIP.String() + ":",
		},
		{
			name: "loopback of the machine too",
			listen: func(t *testing.T, port string) {
				listenIn(t, link.netns, "127.0.0.1:"+port, "")
				l, err := net.Listen("tcp", "127.0.0.1:"+port)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = l.Close() })
			},
			wantErr: "a connection to 127.0.0.1:",
		},
		{
			name:    "nothing",
			listen:  func(*testing.T, string) {},
			wantErr: "does not accept connections",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			tc.listen(t, port)
			s := &State{RunDir: runDir}
			c := &Cluster{Name: "edge1", URL: "https://127.0.0.1:" + port, NetNS: link.netns, NetNSIP: nsIP.String()}
			err := s.CheckIsolated(ctx, c)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("CheckIsolated: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("CheckIsolated: %v, want an error with %q", err, tc.wantErr)
			}
		})
	}

	t.Run("member that is not isolated", func(t *testing.T) {
		s := &State{RunDir: runDir}
		err := s.CheckIsolated(ctx, &Cluster{Name: "member1", URL: "https://127.0.0.1:" + freePort(t)})
		if err == nil || !strings.Contains(err.Error(), "not an isolated member") {
			t.Errorf("got %v", err)
		}
	})
}

// TestHubForwarder: a forwarder on the machine's end of the veth pair
// takes processes in the namespace to a server on the machine's loopback,
// which they cannot dial themselves.
func TestHubForwarder(t *testing.T) {
	runDir := t.TempDir()
	link := testNetNS(t, runDir, "edge1", 0)
	hostIP, _ := vethAddrs(link.subnet)
	hub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	go serveGreeting(hub, "hello from the hub")

	lb, err := ListenLoadBalancer(net.JoinHostPort(hostIP.String(), "0"), hub.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	dial := NetNSDialer(link.netns)
	ctx := context.Background()

	c, err := dial(ctx, "tcp", lb.Addr())
	if err != nil {
		t.Fatalf("dialing the forwarder at %s from inside the namespace: %v", lb.Addr(), err)
	}
	if got := readAll(t, c); got != "hello from the hub" {
		t.Errorf("read %q through the forwarder", got)
	}
	if c, err := dial(ctx, "tcp", hub.Addr().String()); err == nil {
		_ = c.Close()
		t.Errorf("the namespace reaches the machine's %s without the forwarder", hub.Addr())
	}
}

// TestNetNSNames: names and subnets follow from the run directory alone,
// so that Down finds what Up made, and differ between run directories, so
// that two topologies at once do not share them.
func TestNetNSNames(t *testing.T) {
	const dirA, dirB = "/tmp/run-a", "/tmp/run-b"

	if netnsName(dirA, "edge1") != netnsName(dirA+"/", "edge1") || vethSubnet(dirA, 0, 0) != vethSubnet(dirA+"/./", 0, 0) {
		t.Error("the same directory, spelled differently, gets other names")
	}
	nameA := netnsName(dirA, "edge1")
	if nameA != netnsName(dirA, "edge1") {
		t.Error("netnsName is not deterministic")
	}
	if !strings.HasPrefix(nameA, "swb-") || !strings.HasSuffix(nameA, "-edge1") || len(nameA) != len("swb-01234567-edge1") {
		t.Errorf("netnsName = %q, want swb-<8 hex digits>-edge1", nameA)
	}
	if nameA == netnsName(dirB, "edge1") || netnsPrefix(dirA) == netnsPrefix(dirB) {
		t.Errorf("two run directories share the namespace name %q", nameA)
	}
	if h, _ := vethNames(dirA, 0); h == func() string { h, _ := vethNames(dirB, 0); return h }() {
		t.Errorf("two run directories share the interface name %q", h)
	}

	tenSlash8 := netip.MustParsePrefix("10.0.0.0/8")
	seen := map[netip.Prefix]int{}
	var names []string
	for i := 0; i < maxIsolatedMembers; i++ {
		subnet := vethSubnet(dirA, i, 0)
		if subnet != vethSubnet(dirA, i, 0) {
			t.Fatalf("vethSubnet(%d) is not deterministic", i)
		}
		if subnet.Bits() != 30 || subnet != subnet.Masked() || !tenSlash8.Overlaps(subnet) {
			t.Errorf("member %d: subnet %s, want a /30 of 10.0.0.0/8", i, subnet)
		}
		if j, ok := seen[subnet]; ok {
			t.Errorf("members %d and %d share %s", j, i, subnet)
		}
		seen[subnet] = i
		host, ns := vethAddrs(subnet)
		if host != subnet.Addr().Next() || ns != host.Next() {
			t.Errorf("member %d: veth addresses %s and %s in %s", i, host, ns, subnet)
		}
		h, n := vethNames(dirA, i)
		if len(h) > 15 || len(n) > 15 {
			t.Errorf("interface names %q and %q are longer than 15 bytes", h, n)
		}
		names = append(names, h, n)
	}
	slices.Sort(names)
	if len(slices.Compact(names)) != 2*maxIsolatedMembers {
		t.Error("two interfaces share a name")
	}
	if vethSubnet(dirA, 0, 0) == vethSubnet(dirB, 0, 0) {
		t.Errorf("two run directories share the subnet %s", vethSubnet(dirA, 0, 0))
	}
	if vethSubnet(dirA, 0, 0) == vethSubnet(dirA, 0, 1) {
		t.Error("the next attempt offers the same subnet")
	}
	if _, err := freeVethSubnet(dirA, maxIsolatedMembers); err == nil {
		t.Errorf("a subnet for member %d, past the room of a run directory", maxIsolatedMembers+1)
	}
}

// TestFreeVethSubnetSkipsUsedOnes: a subnet that the machine already has
// an address in is not offered again, not even to the run directory that
// holds it.
func TestFreeVethSubnetSkipsUsedOnes(t *testing.T) {
	runDir := t.TempDir()
	first := testNetNS(t, runDir, "edge1", 0)
	again, err := freeVethSubnet(runDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if again == first.subnet {
		t.Errorf("offered %s, which the machine's end of %s has", again, first.hostVeth)
	}
	if again != vethSubnet(runDir, 0, 1) {
		t.Errorf("offered %s, want the next candidate %s", again, vethSubnet(runDir, 0, 1))
	}
}

// TestDownRemovesNetNS: make local-down deletes the namespaces and veth
// pairs of its run directory, recorded or left by a crashed run, and no
// other run directory's; a second run finds nothing to do.
func TestDownRemovesNetNS(t *testing.T) {
	for _, tc := range []struct {
		name string
		// record writes what a run left in runDir.
		record func(t *testing.T, runDir string, link netnsLink)
	}{
		{"recorded in the state", func(t *testing.T, runDir string, link netnsLink) {
			s := &State{RunDir: runDir, Isolated: []Cluster{{Name: "edge1", NetNS: link.netns, HostVeth: link.hostVeth}}}
			if err := s.save(); err != nil {
				t.Fatal(err)
			}
		}},
		{"left without a state file", func(*testing.T, string, netnsLink) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runDir := filepath.Join(t.TempDir(), "run")
			if err := os.MkdirAll(runDir, 0o700); err != nil {
				t.Fatal(err)
			}
			link := testNetNS(t, runDir, "edge1", 0)
			tc.record(t, runDir, link)
			other := testNetNS(t, filepath.Join(t.TempDir(), "other-run"), "edge1", 0)

			if err := Down(runDir, io.Discard); err != nil {
				t.Fatal(err)
			}
			if netnsExists(link.netns) {
				t.Errorf("network namespace %s is still there", link.netns)
			}
			if linkExists(link.hostVeth) {
				t.Errorf("interface %s is still there", link.hostVeth)
			}
			if _, err := os.Stat(runDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("run directory: %v, want it removed", err)
			}
			if !netnsExists(other.netns) || !linkExists(other.hostVeth) {
				t.Errorf("Down of %s removed %s or %s of another run directory", runDir, other.netns, other.hostVeth)
			}
			if err := Down(runDir, io.Discard); err != nil {
				t.Errorf("second Down: %v", err)
			}
		})
	}
}

// TestProcessInNetNS: a process started in a namespace runs there, and
// the liveness check of a state file's reader, Stop and RestartProcess
// work on it as on any other.
func TestProcessInNetNS(t *testing.T) {
	sleep := sleepBinary(t)
	runDir := t.TempDir()
	link := testNetNS(t, runDir, "edge1", 0)
	s := &State{RunDir: runDir}
	if err := os.MkdirAll(s.LogDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := startProcessIn(link.netns, "sleep", s.LogDir(), []string{sleep, "600"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(stopGrace) })
	s.Processes = []*Process{p}
	if p.NetNS != link.netns || !slices.Equal(p.Args, []string{sleep, "600"}) {
		t.Errorf("recorded netns %q and args %q", p.NetNS, p.Args)
	}
	waitExeced(t, p)
	checkInNetNS(t, p.PID, link.netns)
	if r := recorded(t, p); !r.Alive() {
		t.Fatalf("pid %d with command line %q is not alive to a state file's reader", p.PID, cmdline(p.PID))
	}

	// Stopped as make local-down does, from a state file.
	if err := recorded(t, p).Stop(stopGrace); err != nil {
		t.Fatal(err)
	}
	mustWaitExit(t, p)

	if err := s.RestartProcess("sleep"); err != nil {
		t.Fatal(err)
	}
	waitExeced(t, p)
	checkInNetNS(t, p.PID, link.netns)
}

// waitExeced waits until ip has exec'd the process's binary; the test's
// own deadline bounds the wait.
func waitExeced(t *testing.T, p *Process) {
	t.Helper()
	for !slices.Equal(cmdline(p.PID), p.Args) {
		if !p.Alive() {
			t.Fatalf("%s exited (%s):\n%s", p.Name, p.exitStatus(), p.tail(20))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cmdline(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// checkInNetNS fails the test unless pid runs in the network namespace ns.
func checkInNetNS(t *testing.T, pid int, ns string) {
	t.Helper()
	want, err := os.Stat(filepath.Join(netnsDir, ns))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(want, got) {
		t.Errorf("pid %d is not in network namespace %s", pid, ns)
	}
}

// TestAliveInProcInNetNS: until ip has exec'd the binary, a process in a
// namespace shows ip's command line, which counts for that namespace only.
func TestAliveInProcInNetNS(t *testing.T) {
	args := []string{"/bin/etcd", "--name=local"}
	wrapper := func(ns string) []byte {
		return []byte(strings.Join(append([]string{"/usr/sbin/ip", "netns", "exec", ns}, args...), "\x00") + "\x00")
	}
	running := procStat{state: 'S', startTime: 7}
	for _, tc := range []struct {
		name    string
		netns   string
		cmdline []byte
		want    bool
	}{
		{"binary", "swb-1-edge1", []byte("/bin/etcd\x00--name=local\x00"), true},
		{"ip netns exec, before its exec", "swb-1-edge1", wrapper("swb-1-edge1"), true},
		{"ip netns exec of another namespace", "swb-1-edge1", wrapper("swb-2-edge1"), false},
		{"ip netns exec, for a process in the machine's namespace", "", wrapper("swb-1-edge1"), false},
		{"another binary", "swb-1-edge1", []byte("/bin/sh\x00--name=local\x00"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Process{Name: "etcd", PID: 1, StartTime: 7, Args: args, NetNS: tc.netns}
			if got := p.aliveInProc(running, tc.cmdline); got != tc.want {
				t.Errorf("alive = %v, want %v", got, tc.want)
			}
		})
	}
}
