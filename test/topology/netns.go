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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Linux network namespaces, as ip netns names them: what isolated members
// run in. Each holds a loopback interface and one end of a veth pair whose
// other end is in the machine's namespace, with a /30 between the two.
// There is no default route: a process inside reaches the machine's end
// of the pair, and nothing else.

const (
	// netnsDir holds a file per named network namespace (ip-netns(8)).
	netnsDir = "/var/run/netns"
	// maxIsolatedMembers is how many /30s fit in the /24 of one run
	// directory.
	maxIsolatedMembers = 64
	// subnetAttempts is how many /24s of 10.0.0.0/8 are tried, derived
	// from the run directory one after the other, before giving up when
	// the machine's addresses cover them.
	subnetAttempts = 16
)

// runHash names the run directory in 8 hex digits, for the names of the
// namespaces and interfaces made for it: other directories get others.
func runHash(runDir string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(runDir)))
	return hex.EncodeToString(sum[:4])
}

// netnsPrefix starts the name of every network namespace made for runDir.
func netnsPrefix(runDir string) string { return "swb-" + runHash(runDir) + "-" }

// netnsName is the network namespace of the cluster of runDir.
func netnsName(runDir, cluster string) string { return netnsPrefix(runDir) + cluster }

// vethPrefix starts the name of every interface made for runDir. It is
// short: an interface name has at most 15 bytes.
func vethPrefix(runDir string) string { return "sb" + runHash(runDir) }

// vethNames are the two ends of the veth pair of the index-th (from 0)
// isolated member of runDir: host in the machine's namespace, ns in the
// member's.
func vethNames(runDir string, index int) (host, ns string) {
	n := strconv.Itoa(index + 1)
	return vethPrefix(runDir) + "h" + n, vethPrefix(runDir) + "n" + n
}

// vethSubnet is the attempt-th candidate /30 for the veth pair of the
// index-th (from 0) isolated member of runDir: the index-th /30 of a /24 of
// 10.0.0.0/8 derived from runDir and attempt.
func vethSubnet(runDir string, index, attempt int) netip.Prefix {
	sum := sha256.Sum256([]byte(filepath.Clean(runDir) + "\x00subnet\x00" + strconv.Itoa(attempt)))
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, sum[0], sum[1], byte(4 * index)}), 30)
}

// vethAddrs are the two usable addresses of a /30: the machine's end
// first, then the namespace's.
func vethAddrs(subnet netip.Prefix) (host, ns netip.Addr) {
	host = subnet.Masked().Addr().Next()
	return host, host.Next()
}

// freeVethSubnet returns the first candidate /30 for the index-th isolated
// member of runDir that overlaps none of the machine's addresses (as ip
// -o addr lists them), so that it takes no traffic from another network,
// nor from the veth pairs of another run directory.
func freeVethSubnet(runDir string, index int) (netip.Prefix, error) {
	if index < 0 || index >= maxIsolatedMembers {
		return netip.Prefix{}, fmt.Errorf("no veth subnet for isolated member %d: a run directory has room for %d", index+1, maxIsolatedMembers)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("listing the machine's addresses: %w", err)
	}
	var used []netip.Prefix
	for _, a := range addrs {
		if ipNet, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(ipNet.String()); err == nil {
				used = append(used, p)
			}
		}
	}
	var conflicts []string
	for attempt := 0; attempt < subnetAttempts; attempt++ {
		candidate := vethSubnet(runDir, index, attempt)
		conflict := ""
		for _, u := range used {
			if u.Overlaps(candidate) {
				conflict = u.String()
				break
			}
		}
		if conflict == "" {
			return candidate, nil
		}
		conflicts = append(conflicts, candidate.String()+" overlaps "+conflict)
	}
	return netip.Prefix{}, fmt.Errorf("no free /30 in 10.0.0.0/8 for a veth pair: %s", strings.Join(conflicts, ", "))
}

// netnsLink describes one namespace and its veth pair.
type netnsLink struct {
	netns            string
	hostVeth, nsVeth string
	subnet           netip.Prefix
}

// createNetNS makes the namespace with its loopback up and the veth pair
// between it and the machine's namespace, both ends up and addressed.
func createNetNS(l netnsLink) error {
	if err := checkNetNSName(l.netns); err != nil {
		return err
	}
	host, ns := vethAddrs(l.subnet)
	bits := "/" + strconv.Itoa(l.subnet.Bits())
	for _, args := range [][]string{
		{"netns", "add", l.netns},
		{"-n", l.netns, "link", "set", "lo", "up"},
		{"link", "add", l.hostVeth, "type", "veth", "peer", "name", l.nsVeth, "netns", l.netns},
		{"addr", "add", host.String() + bits, "dev", l.hostVeth},
		{"link", "set", l.hostVeth, "up"},
		{"-n", l.netns, "addr", "add", ns.String() + bits, "dev", l.nsVeth},
		{"-n", l.netns, "link", "set", l.nsVeth, "up"},
	} {
		if err := runIP(args...); err != nil {
			return err
		}
	}
	return nil
}

// removeNetNS deletes every network namespace and interface made for
// runDir, by their names' prefixes: those a state file records and those a
// crashed run did not record. Deleting the machine's end of a veth pair
// deletes the other end. It does nothing when there are none.
func removeNetNS(runDir string, out io.Writer) error {
	var errs []error
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("listing the machine's interfaces: %w", err)
	}
	for _, iface := range ifaces {
		if !strings.HasPrefix(iface.Name, vethPrefix(runDir)) {
			continue
		}
		fmt.Fprintf(out, "Deleting interface %s\n", iface.Name)
		if err := runIP("link", "del", iface.Name); err != nil && linkExists(iface.Name) {
			errs = append(errs, err)
		}
	}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), netnsPrefix(runDir)) {
			continue
		}
		fmt.Fprintf(out, "Deleting network namespace %s\n", e.Name())
		if err := runIP("netns", "del", e.Name()); err != nil && netnsExists(e.Name()) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// checkNetNSName refuses what is not the name of a file in netnsDir.
func checkNetNSName(ns string) error {
	if ns == "" || ns == "." || ns == ".." || strings.ContainsRune(ns, '/') {
		return fmt.Errorf("invalid network namespace name %q", ns)
	}
	return nil
}

// ipBinary is the path of ip(8), which is in /usr/sbin or /sbin when
// the PATH does not have it.
func ipBinary() string {
	if path, err := exec.LookPath("ip"); err == nil {
		return path
	}
	for _, path := range []string{"/usr/sbin/ip", "/sbin/ip"} {
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	return "ip"
}

func runIP(args ...string) error {
	out, err := exec.Command(ipBinary(), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netnsCommand is the command line that runs args in the network
// namespace netns. ip execs the binary in the same process.
func netnsCommand(netns string, args []string) []string {
	return append([]string{ipBinary(), "netns", "exec", netns}, args...)
}

// NetNSDialer returns a dial function, as net.Dialer.DialContext and
// rest.Config.Dial take, whose connections leave from inside the network
// namespace ns (a name of ip netns): 127.0.0.1 is the namespace's own.
// Only the socket is made there; a host name is resolved as in the
// caller's namespace.
func NetNSDialer(ns string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		return inNetNS(ns, func() (net.Conn, error) {
			// Serially: with a fallback delay, the dialer races IPv4 and
			// IPv6 addresses on goroutines of their own, on threads
			// outside ns.
			d := net.Dialer{FallbackDelay: -1}
			return d.DialContext(ctx, network, address)
		})
	}
}

// inNetNS runs fn on an OS thread of its own that has entered the network
// namespace ns, and returns what it returns. Sockets fn makes belong to ns
// for their whole life, whichever thread uses them afterwards.
func inNetNS[T any](ns string, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: when this goroutine returns, the runtime ends
		// its thread, which is in ns, instead of running other
		// goroutines on it.
		runtime.LockOSThread()
		var r result
		r.v, r.err = enterNetNS(ns, fn)
		done <- r
	}()
	r := <-done
	return r.v, r.err
}

func enterNetNS[T any](ns string, fn func() (T, error)) (T, error) {
	var zero T
	if err := checkNetNSName(ns); err != nil {
		return zero, err
	}
	fd, err := unix.Open(filepath.Join(netnsDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return zero, fmt.Errorf("opening network namespace %s: %w", ns, err)
	}
	defer func() { _ = unix.Close(fd) }()
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return zero, fmt.Errorf("entering network namespace %s: %w", ns, err)
	}
	return fn()
}
