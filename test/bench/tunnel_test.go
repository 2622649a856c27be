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
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseTCPTable(t *testing.T) {
	// Addresses whose bytes read the same in either byte order, so that
	// the sample is what any Linux machine writes: 127.0.0.127 and ::.
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 7F00007F:A1B1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1000 1 0000000000000000 100 0 0 10 0
   1: 7F00007F:CE24 7F00007F:AF15 01 00000000:00000000 02:000006D1 00000000     0        0 2001 2 0000000000000000 20 4 30 10 -1
   2: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3003 1
   3: short line
`)
	got, err := parseTCPTable(table)
	if err != nil {
		t.Fatal(err)
	}
	want := []tcpEntry{
		{Local: netip.MustParseAddrPort("127.0.0.127:41393"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: "0A", Inode: 1000},
		{Local: netip.MustParseAddrPort("127.0.0.127:52772"), Remote: netip.MustParseAddrPort("127.0.0.127:44821"), State: tcpEstablished, Inode: 2001},
		{Local: netip.MustParseAddrPort("[::]:8080"), Remote: netip.MustParseAddrPort("[::]:0"), State: "0A", Inode: 3003},
	}
	if len(got) != len(want) {
		t.Fatalf("parseTCPTable = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	for name, line := range map[string]string{
		"no port":       "   0: 7F00007F 00000000:0000 01 0:0 0:0 0 0 0 1000",
		"short IP":      "   0: 7F0000:A1B1 00000000:0000 01 0:0 0:0 0 0 0 1000",
		"bad remote IP": "   0: 7F00007F:A1B1 0000ZZ00:0000 01 0:0 0:0 0 0 0 1000",
		"bad inode":     "   0: 7F00007F:A1B1 00000000:0000 01 0:0 0:0 0 0 0 x1000",
	} {
		if _, err := parseTCPTable([]byte(header + line + "\n")); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The kernel's own tables, on this machine: connections of this process
// over IPv4, over IPv6, and IPv4 into a dual-stack listener, whose
// accepted end the kernel lists in tcp6 as ::ffff:127.0.0.1.
func TestEstablishedPairsAndTrafficOfThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	const payload = 10000
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			dialed, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer dialed.Close()
			accepted, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer accepted.Close()
			if _, err := dialed.Write(make([]byte, payload)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(accepted, make([]byte, payload)); err != nil {
				t.Fatal(err)
			}

			ends := map[string]ConnPair{
				"dialed":   {addrPort(t, dialed.LocalAddr()), addrPort(t, dialed.RemoteAddr())},
				"accepted": {addrPort(t, accepted.LocalAddr()), addrPort(t, accepted.RemoteAddr())},
			}
			if ends["dialed"].Local != ends["accepted"].Remote {
				t.Fatalf("the ends do not mirror each other: %+v", ends)
			}
			pairs, err := EstablishedPairs(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			for name, pair := range ends {
				if !pairs[pair] {
					t.Errorf("EstablishedPairs lacks the %s end %+v", name, pair)
				}
			}

			traffic, err := ReadConnTraffic(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			var received uint64
			found := false
			for _, c := range traffic {
				if (ConnPair{c.Local, c.Remote}) == ends["accepted"] {
					received, found = c.Bytes, true
				}
			}
			// The receiving end counts what it received; the sending end
			// counts what was acknowledged, which may come later.
			if !found || received < payload {
				t.Errorf("ReadConnTraffic: the accepted end found %v, moved %d bytes, want at least %d", found, received, payload)
			}
		})
	}
}

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func TestFindCarriers(t *testing.T) {
	sb := netip.MustParseAddrPort("127.0.0.1:6443")
	conn := func(remotePort uint16, bytes uint64) ConnTraffic {
		return ConnTraffic{Local: sb, Remote: netip.AddrPortFrom(sb.Addr(), remotePort), Bytes: bytes}
	}
	// The peers' ends: local and remote swapped.
	end := func(remotePort uint16) ConnPair {
		return ConnPair{Local: netip.AddrPortFrom(sb.Addr(), remotePort), Remote: sb}
	}
	peers := map[string]map[ConnPair]bool{
		HubPeer:    {end(1): true, end(2): true, end(6): true},
		ClientPeer: {end(3): true},
	}
	before := map[uint64]ConnTraffic{
		10: conn(1, 1_000_000), // the tunnel: moves 500 kB
		11: conn(2, 1_000_000), // the hub's other connection: moves 100 bytes
		12: conn(3, 0),         // this client's: moves 400 kB
		13: conn(4, 50),        // someone else's: moves 300 kB
		14: conn(5, 9),         // closed during the load
		16: conn(7, 900_000),   // its inode now holds another connection, of the hub
	}
	after := map[uint64]ConnTraffic{
		10: conn(1, 1_500_000),
		11: conn(2, 1_000_100),
		12: conn(3, 400_000),
		13: conn(4, 300_050),
		15: conn(6, 200), // opened during the load, of the hub: 200 bytes
		16: conn(6, 250_000),
	}
	got := FindCarriers(before, after, 1000, peers)
	wantConns := map[string]int{HubPeer: 2, ClientPeer: 1, OtherPeer: 1}
	wantBytes := map[string]uint64{HubPeer: 750_000, ClientPeer: 400_000, OtherPeer: 300_000}
	for _, peer := range []string{HubPeer, ClientPeer, OtherPeer} {
		if got.Conns[peer] != wantConns[peer] || got.Bytes[peer] != wantBytes[peer] {
			t.Errorf("%s: %d connections, %d bytes; want %d, %d", peer, got.Conns[peer], got.Bytes[peer], wantConns[peer], wantBytes[peer])
		}
	}
	if len(got.Conns) != len(wantConns) {
		t.Errorf("Conns = %v, want %v", got.Conns, wantConns)
	}
}

func TestParseTunnelMetrics(t *testing.T) {
	exposition := `# HELP switchboard_tunnel_agents_connected [ALPHA] Tunnels that switchboard-agents hold to this replica, by cluster.
# TYPE switchboard_tunnel_agents_connected gauge
switchboard_tunnel_agents_connected{cluster="edge1"} 1
switchboard_tunnel_agents_connected{cluster="edge2"} 3
# HELP switchboard_tunnel_connects_total [ALPHA] Tunnels that switchboard-agents opened to this replica, by cluster.
# TYPE switchboard_tunnel_connects_total counter
switchboard_tunnel_connects_total{cluster="edge1"} 2
switchboard_tunnel_connects_total{cluster="edge2"} 7
# HELP switchboard_tunnel_streams_open [ALPHA] Streams open from this replica to members through their tunnels, by cluster.
# TYPE switchboard_tunnel_streams_open gauge
switchboard_tunnel_streams_open{cluster="edge2"} 9
switchboard_tunnel_streams_open{cluster="edge1"} 4
# HELP switchboard_tunnel_streams_opened_total [ALPHA] Streams this replica opened to members through their tunnels, by cluster.
# TYPE switchboard_tunnel_streams_opened_total counter
switchboard_tunnel_streams_opened_total{cluster="edge1"} 12
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 321
`
	got, err := parseTunnelMetrics([]byte(exposition), "edge1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (TunnelMetrics{AgentsConnected: 1, StreamsOpen: 4, StreamsOpened: 12, Connects: 2}); got != want {
		t.Errorf("parseTunnelMetrics = %+v, want %+v", got, want)
	}
	_, err = parseTunnelMetrics([]byte(exposition), "edge2")
	if err == nil || !strings.Contains(err.Error(), `switchboard_tunnel_streams_opened_total{cluster="edge2"}`) {
		t.Errorf("a series missing for edge2: %v, want an error naming it", err)
	}
}

func TestTunnelMarkdown(t *testing.T) {
	r := &Report{
		Member: "member1", GetPath: "/api/v1/namespaces/default", Workers: 16,
		Paths:      []*Path{{Key: "A", Name: "direct to member1"}, {Key: "B", Name: "switchboard alone"}, {Key: "C", Name: "through the hub"}},
		DirectPath: "A", SwitchboardPath: "B",
		Protocols: map[string]string{}, Load: map[string]*LoadResult{"A": oneSecondOf(2000), "B": oneSecondOf(1000), "C": oneSecondOf(600), "D": oneSecondOf(1800), "E": oneSecondOf(900)},
		Serial: map[string]*LoadResult{}, LoadCPU: map[string]CPUSnapshot{
			"B": {"switchboard": 500 * time.Millisecond},
			"E": {"switchboard": 630 * time.Millisecond, "agent": 270 * time.Millisecond},
		},
	}
	without := r.Markdown()
	if strings.Contains(without, "Through a tunnel") {
		t.Error("a run without a tunnel shows a tunnel table")
	}
	r.Tunnel = &TunnelReport{
		Member: "edge1", Paths: []*Path{{Key: "D", Name: "direct to edge1"}, {Key: "E", Name: "switchboard alone through edge1's tunnel"}},
		DirectPath: "D", TunnelPath: "E",
		CPURoles:        []string{"switchboard", "agent"},
		CPUProcesses:    map[string][]string{"B": {"switchboard", "agent"}, "D": {"switchboard", "agent"}, "E": {"switchboard", "agent"}},
		Carriers:        []Carriers{{Conns: map[string]int{HubPeer: 1, ClientPeer: 1}, Bytes: map[string]uint64{HubPeer: 900 * 800}}},
		CarrierRequests: []int{900},
	}
	with := r.Markdown()
	if !strings.HasPrefix(with, without) {
		t.Error("the tunnel table changes the main table")
	}
	for _, want := range []string{
		"| GET /api/v1/namespaces/default, 16 workers: requests/s | 1800 | 900 (50% of D) | 1000 | **90%** (≥ 85%) |",
		"| 0.00 · 0.00 | 0.70 · 0.30 | 0.50 · 0.00 | per request: switchboard +0.20, agent +0.30, hub +0.00, hub forwarder +0.00 ms |",
		"| — | 1 · 1 · 0; 0 | — | **1** (the tunnel: the hub's connection switchboard took over), 800 bytes per request on it; 0 to edge1 (want none) |",
	} {
		if !strings.Contains(with, want) {
			t.Errorf("the tunnel table lacks %q:\n%s", want, with[len(without):])
		}
	}
}

// oneSecondOf is a load of requests in one second, each taking 1 ms.
func oneSecondOf(requests int) *LoadResult {
	return &LoadResult{Requests: requests, Elapsed: time.Second, Latencies: []time.Duration{time.Millisecond}}
}
