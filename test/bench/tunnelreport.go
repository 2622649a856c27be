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
	"fmt"
	"strings"
)

// TunnelTarget is the share of B's requests per second that E should
// reach: the tunnel may cost at most 15% of switchboard's direct path.
const TunnelTarget = 0.85

// CarrierMinBytesPerRequest is what a connection must have moved, per
// request of E's load, to count as carrying it. Every request and its
// answer cross the tunnel in TLS records inside yamux frames, several
// hundred bytes; the other connections of switchboard (to the hub for
// authorization and informers, to members for health probes) move a few
// kilobytes in a round.
const CarrierMinBytesPerRequest = 64

// TunnelReport is what one run measured of the member reached through a
// tunnel, on paths D and E, next to B. The loads' results are in the
// Report's maps, under the paths' keys.
type TunnelReport struct {
	// Member is the tunnelled member and MemberVersion its gitVersion.
	Member, MemberVersion string
	// Paths are D and E; DirectPath and TunnelPath their keys.
	Paths                  []*Path
	DirectPath, TunnelPath string
	// CPURoles name the columns of the CPU row, and CPUProcesses says,
	// by path key, which process of Report.LoadCPU fills each.
	CPURoles     []string
	CPUProcesses map[string][]string
	// ConnsToMember is the most TCP connections switchboard held to the
	// member's port during E's loads.
	ConnsToMember int
	// Carriers are switchboard's connections that carried each of E's
	// loads, and CarrierRequests the requests of those loads.
	Carriers        []Carriers
	CarrierRequests []int
	// MetricsBefore and MetricsAfter are switchboard's tunnel metrics
	// before and after the small GETs; StreamsAfterLoad is the most
	// streams open right after one of E's loads.
	MetricsBefore, MetricsAfter TunnelMetrics
	StreamsAfterLoad            float64
	// IdleBefore and IdleAfter are the memory of switchboard and the agent
	// with the tunnel idle, before and after the small GETs.
	IdleBefore, IdleAfter TunnelIdle
}

// TunnelIdle is the memory of the two ends of an idle tunnel.
type TunnelIdle struct {
	SwitchboardRSS, AgentRSS int64
	Switchboard              GoStats
}

// Peer names of Carriers that the tunnel table shows.
const (
	HubPeer    = "hub"
	ClientPeer = "this client"
)

// tunnelCostRoles are the CPU roles the tunnel adds to or changes on
// switchboard's direct path.
var tunnelCostRoles = []string{"switchboard", "agent", "hub", "hub forwarder"}

// tunnelMarkdown renders the tunnel's table, after the main one.
func (r *Report) tunnelMarkdown(b *strings.Builder) {
	t := r.Tunnel
	d, e, s := t.DirectPath, t.TunnelPath, r.SwitchboardPath
	fmt.Fprintf(b, "\n#### Through a tunnel\n\n")
	fmt.Fprintf(b, "%s runs in a network namespace of its own that neither the hub nor switchboard can reach (%s kube-apiserver %s, its own etcd); "+
		"its switchboard-agent holds a tunnel through the hub's kube-apiserver (clusters/%s/attach). "+
		"Paths (%s): **%s** %s, dialed from inside its network namespace; **%s** %s, as B: switchboard, then the tunnel "+
		"(the hub's connection to switchboard that switchboard took over for the agent, the hub's kube-apiserver, %s's hub forwarder, the agent), then %s. "+
		"They take turns with A, B and C in the same rounds, with the same load. "+
		"The tunnel's cost is E against B, switchboard's direct path to %s (target: E ≥ %.0f%% of B).\n\n",
		t.Member, t.Member, t.MemberVersion, t.Member, r.tunnelProtocols(), d, t.Paths[0].Name, e, t.Paths[1].Name, t.Member, t.Member, r.Member, 100*TunnelTarget)

	keys := []string{d, e, s}
	fmt.Fprintf(b, "| metric | %s: %s | %s: %s | %s: switchboard alone to %s (above) | E vs B (target) |\n|---|---:|---:|---:|---|\n",
		d, t.Paths[0].Name, e, t.Paths[1].Name, s, r.Member)
	row := func(metric string, c cell, compare string) {
		fmt.Fprintf(b, "| %s |", metric)
		for _, k := range keys {
			fmt.Fprintf(b, " %s |", c(k))
		}
		fmt.Fprintf(b, " %s |\n", compare)
	}
	only := func(v string) cell {
		return func(k string) string {
			if k == e {
				return v
			}
			return "—"
		}
	}

	load := func(k string) *LoadResult { return orEmpty(r.Load[k]) }
	get := fmt.Sprintf("GET %s, %d workers", r.GetPath, r.Workers)
	row(get+": requests/s", func(k string) string {
		if k == e {
			return fmt.Sprintf("%.0f (%s of D)", load(k).RPS(), percent(load(k).RPS(), load(d).RPS()))
		}
		return fmt.Sprintf("%.0f", load(k).RPS())
	}, fmt.Sprintf("**%s** (≥ %.0f%%)", percent(load(e).RPS(), load(s).RPS()), 100*TunnelTarget))
	row(get+": p50 latency", func(k string) string { return ms(load(k).Percentile(0.50)) },
		delta(load(e).Percentile(0.50)-load(s).Percentile(0.50)))
	row(get+": p99 latency", func(k string) string { return ms(load(k).Percentile(0.99)) },
		delta(load(e).Percentile(0.99)-load(s).Percentile(0.99)))
	cpu := func(k, role string) float64 {
		for i, name := range t.CPURoles {
			if name == role && i < len(t.CPUProcesses[k]) && load(k).Requests > 0 {
				return r.LoadCPU[k][t.CPUProcesses[k][i]].Seconds() * 1000 / float64(load(k).Requests)
			}
		}
		return 0
	}
	row(get+": CPU ms per request of "+strings.Join(t.CPURoles, " · ")+" (B: "+r.Member+" and the shared etcd)", func(k string) string {
		parts := make([]string, 0, len(t.CPURoles))
		for _, role := range t.CPURoles {
			parts = append(parts, fmt.Sprintf("%.2f", cpu(k, role)))
		}
		return strings.Join(parts, " · ")
	}, func() string {
		parts := make([]string, 0, len(tunnelCostRoles))
		for _, role := range tunnelCostRoles {
			parts = append(parts, fmt.Sprintf("%s %+.2f", role, cpu(e, role)-cpu(s, role)))
		}
		return "per request: " + strings.Join(parts, ", ") + " ms"
	}())
	serial := func(k string) *LoadResult { return orEmpty(r.Serial[k]) }
	row(fmt.Sprintf("GET %s, 1 worker: p50 / p99 latency", r.GetPath), func(k string) string {
		return ms(serial(k).Percentile(0.50)) + " / " + ms(serial(k).Percentile(0.99))
	}, delta(serial(e).Percentile(0.50)-serial(s).Percentile(0.50))+" / "+delta(serial(e).Percentile(0.99)-serial(s).Percentile(0.99)))

	conns, bytesPerRequest := t.carrierPeaks()
	row(fmt.Sprintf("switchboard's TCP connections that carried E's %d-worker GETs (each ≥ %d bytes per request, from TCP_INFO), most in a round: "+
		"with the hub · with this client · with others; and to %s's port", r.Workers, CarrierMinBytesPerRequest, t.Member),
		only(fmt.Sprintf("%d · %d · %d; %d", conns[HubPeer], conns[ClientPeer], conns[OtherPeer], t.ConnsToMember)),
		fmt.Sprintf("**%d** (the tunnel: the hub's connection switchboard took over), %.0f bytes per request on it; %d to %s (want none)", conns[HubPeer], bytesPerRequest, t.ConnsToMember, t.Member))
	before, after := t.MetricsBefore, t.MetricsAfter
	row(fmt.Sprintf("switchboard_tunnel_streams_open{cluster=%q}: most right after an E load / idle after the GETs", t.Member),
		only(fmt.Sprintf("%.0f / %.0f", t.StreamsAfterLoad, after.StreamsOpen)), fmt.Sprintf("for %d workers", r.Workers))
	row("switchboard_tunnel_agents_connected; streams opened and agent connects during the GETs",
		only(fmt.Sprintf("%.0f; %+.0f streams, %+.0f connects", after.AgentsConnected, after.StreamsOpened-before.StreamsOpened, after.Connects-before.Connects)), "")
	row("one idle tunnel, before → after the GETs: switchboard RSS, heap in use, goroutines", only(fmt.Sprintf("%s → %s, %s → %s, %.0f → %.0f",
		mib(t.IdleBefore.SwitchboardRSS), mib(t.IdleAfter.SwitchboardRSS),
		mib(int64(t.IdleBefore.Switchboard.HeapInuse)), mib(int64(t.IdleAfter.Switchboard.HeapInuse)),
		t.IdleBefore.Switchboard.Goroutines, t.IdleAfter.Switchboard.Goroutines)), "the whole server, with one tunnel")
	row("one idle tunnel, before → after the GETs: the agent's RSS", only(fmt.Sprintf("%s → %s", mib(t.IdleBefore.AgentRSS), mib(t.IdleAfter.AgentRSS))),
		"the member's end of one tunnel")
	row("failed requests or wrong answers", func(k string) string {
		n := 0
		for _, l := range []*LoadResult{r.Load[k], r.Serial[k]} {
			if l != nil {
				n += l.Errors
			}
		}
		return fmt.Sprintf("%d", n)
	}, "must be 0")
}

// carrierPeaks are the most connections of each peer that carried one of
// E's loads, and the bytes per request on the hub's.
func (t *TunnelReport) carrierPeaks() (map[string]int, float64) {
	peaks := map[string]int{}
	var hubBytes uint64
	requests := 0
	for i, c := range t.Carriers {
		for peer, n := range c.Conns {
			peaks[peer] = max(peaks[peer], n)
		}
		hubBytes += c.Bytes[HubPeer]
		if i < len(t.CarrierRequests) {
			requests += t.CarrierRequests[i]
		}
	}
	if requests == 0 {
		return peaks, 0
	}
	return peaks, float64(hubBytes) / float64(requests)
}

func (r *Report) tunnelProtocols() string {
	var parts []string
	for _, p := range r.Tunnel.Paths {
		parts = append(parts, p.Key+" "+r.Protocols[p.Key])
	}
	return strings.Join(parts, ", ")
}
