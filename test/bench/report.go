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
	"slices"
	"strings"
	"time"
)

// Report is everything one run measured, printed as one markdown table.
type Report struct {
	Machine Machine
	// MemberVersion and SwitchboardVersion are the gitVersions the servers report.
	MemberVersion, SwitchboardVersion string
	// SwitchboardOpenFiles is switchboard's own open-files limit.
	SwitchboardOpenFiles string
	// OtherAPIServers counts kube-apiservers on the machine that are not
	// this topology's: someone else's tests make the numbers noisy.
	OtherAPIServers       [2]int // before and after
	LoadBefore, LoadAfter string
	Duration              time.Duration
	Member                string
	Protocols             map[string]string // by path key
	Paths                 []*Path
	GetPath               string
	Workers               int
	Rounds                int
	RoundLength           time.Duration
	Load, Serial          map[string]*LoadResult // by path key
	ConnsPeak, ConnsAtEnd map[string]int         // switchboard to member, during Load, by path key
	// LoadCPU is the CPU time each process used during Load, by path key,
	// and CPUOrder the processes in the order the table shows them.
	LoadCPU        map[string]CPUSnapshot
	CPUOrder       []string
	List           LargeList
	ListRounds     map[string][]ListResult // by path key
	ListErrors     map[string]int
	Watches        int
	WatchRSSBefore int64
	WatchRSSOpen   int64
	WatchRSSClosed int64
	// Switchboard's Go runtime before, with the watches open, and after.
	WatchGoBefore, WatchGoOpen, WatchGoClosed GoStats
	WatchConns                                int
	WatchConnsClosed                          int
	WatchHeadersIn                            time.Duration
	WatchErrors                               int
	SwitchboardPath                           string // the key of the path that is switchboard alone
	DirectPath                                string // the key of the direct path
	// Tunnel is what the run measured of a member reached through a
	// tunnel, shown in a second table; nil when it measured none.
	Tunnel *TunnelReport
	// Policy is what the run measured of path P, shown in a table of its
	// own; nil when it measured none.
	Policy *PolicyReport
	// Fleet is the fleet LIST, shown in a table of its own; nil when the
	// run did not measure it.
	Fleet *FleetResult
}

// cell formats a value for one path, or a dash when the path has none.
type cell func(key string) string

// Markdown renders the report: a few lines on the machine and the method,
// then the table, then the tunnel's table when the run measured one.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "### Switchboard proxy benchmark\n\n")
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s RAM, %s, %s; %s.\n", m.CPU, m.Cores, m.Memory, m.Kernel, m.Go, m.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Topology (test/topology, every process on this machine, on loopback): %s kube-apiserver %s, switchboard %s (open-files limit %s). "+
		"Load average %s before, %s after; other kube-apiservers running on the machine: %d before, %d after. Run took %s.\n",
		r.Member, r.MemberVersion, r.SwitchboardVersion, r.SwitchboardOpenFiles, r.LoadBefore, r.LoadAfter, r.OtherAPIServers[0], r.OtherAPIServers[1], r.Duration.Round(time.Second))
	fmt.Fprintf(&b, "Paths, each one shared Go net/http client with keep-alive, no compression (%s): ", r.protocols())
	for i, p := range r.Paths {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "**%s** %s", p.Key, p.Name)
	}
	fmt.Fprintf(&b, ". B sends X-Remote-User: %s and X-Remote-Group: %s with the front-proxy certificate, as the hub's aggregator does. "+
		"Load: closed loop, %d rounds of %s per path, interleaved, after a warm-up. Numbers are measured, never asserted.\n\n",
		Impersonated.User, Impersonated.Group, r.Rounds, r.RoundLength)

	keys := make([]string, len(r.Paths))
	b.WriteString("| metric |")
	for i, p := range r.Paths {
		keys[i] = p.Key
		fmt.Fprintf(&b, " %s: %s |", p.Key, p.Name)
	}
	b.WriteString(" B vs A (target) |\n|---|")
	for range r.Paths {
		b.WriteString("---:|")
	}
	b.WriteString("---|\n")
	row := func(metric string, c cell, compare string) {
		fmt.Fprintf(&b, "| %s |", metric)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s |", c(k))
		}
		fmt.Fprintf(&b, " %s |\n", compare)
	}
	a, s := r.DirectPath, r.SwitchboardPath

	// Small GETs under load.
	load := func(k string) *LoadResult { return orEmpty(r.Load[k]) }
	get := fmt.Sprintf("GET %s, %d workers", r.GetPath, r.Workers)
	row(get+": requests/s", func(k string) string {
		if k == a {
			return fmt.Sprintf("%.0f", load(k).RPS())
		}
		return fmt.Sprintf("%.0f (%s of A)", load(k).RPS(), percent(load(k).RPS(), load(a).RPS()))
	}, fmt.Sprintf("**%s** (≥ 60%%)", percent(load(s).RPS(), load(a).RPS())))
	row(get+": p50 latency", func(k string) string { return ms(load(k).Percentile(0.50)) },
		delta(load(s).Percentile(0.50)-load(a).Percentile(0.50)))
	row(get+": p99 latency", func(k string) string { return ms(load(k).Percentile(0.99)) },
		fmt.Sprintf("**%s** (< 2 ms)", delta(load(s).Percentile(0.99)-load(a).Percentile(0.99))))
	cpuPerRequest := func(k, process string) float64 {
		if load(k).Requests == 0 {
			return 0
		}
		return r.LoadCPU[k][process].Seconds() * 1000 / float64(load(k).Requests)
	}
	row(get+": CPU ms per request of "+strings.Join(r.CPUOrder, " · "), func(k string) string {
		var parts []string
		for _, name := range r.CPUOrder {
			parts = append(parts, fmt.Sprintf("%.2f", cpuPerRequest(k, name)))
		}
		return strings.Join(parts, " · ")
	}, func() string {
		member, sb := cpuPerRequest(a, r.Member), cpuPerRequest(s, "switchboard")
		if member == 0 {
			return ""
		}
		return fmt.Sprintf("switchboard spends %.1f× the CPU %s spends on a direct GET", sb/member, r.Member)
	}())
	serial := func(k string) *LoadResult { return orEmpty(r.Serial[k]) }
	row(fmt.Sprintf("GET %s, 1 worker: p50 / p99 latency", r.GetPath), func(k string) string {
		return ms(serial(k).Percentile(0.50)) + " / " + ms(serial(k).Percentile(0.99))
	}, delta(serial(s).Percentile(0.50)-serial(a).Percentile(0.50))+" / **"+delta(serial(s).Percentile(0.99)-serial(a).Percentile(0.99))+"** (p99 < 2 ms)")
	row(fmt.Sprintf("TCP connections switchboard → %s during the %d-worker GETs: peak / at end", r.Member, r.Workers), func(k string) string {
		if _, ok := r.ConnsPeak[k]; !ok {
			return "—"
		}
		return fmt.Sprintf("%d / %d", r.ConnsPeak[k], r.ConnsAtEnd[k])
	}, fmt.Sprintf("**%d** (single digits)", r.ConnsPeak[s]))

	// The large LIST.
	listRounds := func(k string) []ListResult { return r.ListRounds[k] }
	median := func(k string, f func(ListResult) float64) float64 {
		var v []float64
		for _, l := range listRounds(k) {
			v = append(v, f(l))
		}
		return medianOf(v)
	}
	var listBytes int64
	if l := listRounds(a); len(l) > 0 {
		listBytes = l[0].Bytes
	}
	list := fmt.Sprintf("LIST of %d ConfigMaps × %d KiB (%.1f MB), median of %d", r.List.Count, r.List.Size/1024, float64(listBytes)/1e6, len(listRounds(a)))
	ttfb := func(l ListResult) float64 { return l.FirstByte.Seconds() * 1000 }
	total := func(l ListResult) float64 { return l.Total.Seconds() * 1000 }
	mbps := func(l ListResult) float64 { return l.MBps() }
	row(list+": time to first byte", func(k string) string { return fmt.Sprintf("%.0f ms", median(k, ttfb)) },
		fmt.Sprintf("%+.0f ms", median(s, ttfb)-median(a, ttfb)))
	row(list+": total time", func(k string) string { return fmt.Sprintf("%.0f ms", median(k, total)) },
		fmt.Sprintf("%+.0f ms", median(s, total)-median(a, total)))
	row(list+": throughput", func(k string) string { return fmt.Sprintf("%.0f MB/s", median(k, mbps)) },
		percent(median(s, mbps), median(a, mbps)))
	row("switchboard RSS during the LIST (sampled every 20 ms): before → peak, largest rise of all rounds", func(k string) string {
		before, peak, ok := r.largestRise(k)
		if !ok {
			return "—"
		}
		return fmt.Sprintf("%s → %s (%s)", mib(before), mib(peak), signedMiB(peak-before))
	}, func() string {
		before, peak, _ := r.largestRise(s)
		return fmt.Sprintf("**%s** vs a %.0f MB answer (flat)", signedMiB(peak-before), float64(listBytes)/1e6)
	}())
	medianIO := func(k string) (read, written float64) {
		return median(k, func(l ListResult) float64 { return float64(l.IO.Read) / 1e6 }),
			median(k, func(l ListResult) float64 { return float64(l.IO.Written) / 1e6 })
	}
	row("switchboard bytes read / written during one LIST (/proc/<pid>/io, sockets included)", func(k string) string {
		if k == a {
			return "—"
		}
		read, written := medianIO(k)
		return fmt.Sprintf("%.1f MB / %.1f MB", read, written)
	}, func() string {
		read, written := medianIO(s)
		if read < 0.9*written {
			return "B reads less than it writes: the member sent gzip and switchboard decompressed it"
		}
		return ""
	}())

	// Idle watches.
	only := func(v string) cell {
		return func(k string) string {
			if k == s {
				return v
			}
			return "—"
		}
	}
	watches := fmt.Sprintf("%d idle watches through B", r.Watches)
	if r.WatchRSSOpen == 0 {
		row(watches, only("failed"), "")
	} else {
		r.watchRows(row, only, watches)
	}

	row("failed requests or wrong answers", func(k string) string {
		n := r.ListErrors[k]
		if l := r.Load[k]; l != nil {
			n += l.Errors
		}
		if l := r.Serial[k]; l != nil {
			n += l.Errors
		}
		if k == s {
			n += r.WatchErrors
		}
		return fmt.Sprintf("%d", n)
	}, "must be 0")
	if r.Tunnel != nil {
		r.tunnelMarkdown(&b)
	}
	if r.Policy != nil {
		r.policyMarkdown(&b)
	}
	if r.Fleet != nil {
		r.fleetMarkdown(&b)
	}
	return b.String()
}

// watchRows are the rows of the idle watches.
func (r *Report) watchRows(row func(string, cell, string), only func(string) cell, watches string) {
	row(watches+": switchboard RSS before → all open", only(fmt.Sprintf("%s → %s", mib(r.WatchRSSBefore), mib(r.WatchRSSOpen))),
		fmt.Sprintf("**%.1f KiB per watch** (< 40 KiB)", float64(r.WatchRSSOpen-r.WatchRSSBefore)/1024/float64(max(r.Watches, 1))))
	n := float64(max(r.Watches, 1))
	before, open, closed := r.WatchGoBefore, r.WatchGoOpen, r.WatchGoClosed
	row(watches+": switchboard Go runtime before → all open: goroutines, stack, heap in use", only(fmt.Sprintf("%.0f → %.0f, %s → %s, %s → %s",
		before.Goroutines, open.Goroutines, mib(int64(before.StackInuse)), mib(int64(open.StackInuse)), mib(int64(before.HeapInuse)), mib(int64(open.HeapInuse)))),
		fmt.Sprintf("per watch: %.1f goroutines, %.1f KiB stack, %.1f KiB heap", (open.Goroutines-before.Goroutines)/n,
			(open.StackInuse-before.StackInuse)/1024/n, (open.HeapInuse-before.HeapInuse)/1024/n))
	row(watches+": switchboard after closing them: RSS, goroutines, heap in use", only(fmt.Sprintf("%s, %.0f, %s", mib(r.WatchRSSClosed), closed.Goroutines, mib(int64(closed.HeapInuse)))),
		fmt.Sprintf("%s RSS, %+.0f goroutines, %s heap vs before (an idle Go server collects only every 2 min; --settle 130s shows what stays)",
			signedMiB(r.WatchRSSClosed-r.WatchRSSBefore), closed.Goroutines-before.Goroutines, signedMiB(int64(closed.HeapInuse-before.HeapInuse))))
	row(watches+": TCP connections switchboard → "+r.Member+" while open / after closing", only(fmt.Sprintf("%d / %d", r.WatchConns, r.WatchConnsClosed)), "")
	row(watches+": time until all had response headers", only(fmt.Sprintf("%.1f s", r.WatchHeadersIn.Seconds())), "")
}

// largestRise is the LIST round of a path with the largest RSS rise.
func (r *Report) largestRise(key string) (before, peak int64, ok bool) {
	for _, l := range r.ListRounds[key] {
		if l.RSSPeak == 0 {
			continue
		}
		if !ok || l.RSSPeak-l.RSSBefore > peak-before {
			before, peak, ok = l.RSSBefore, l.RSSPeak, true
		}
	}
	return before, peak, ok
}

func (r *Report) protocols() string {
	var parts []string
	for _, p := range r.Paths {
		parts = append(parts, p.Key+" "+r.Protocols[p.Key])
	}
	return strings.Join(parts, ", ")
}

func orEmpty(l *LoadResult) *LoadResult {
	if l == nil {
		return &LoadResult{}
	}
	return l
}

// percent is x as a percentage of y.
func percent(x, y float64) string {
	if y == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*x/y)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// delta is a signed difference of latencies.
func delta(d time.Duration) string {
	return fmt.Sprintf("%+.2f ms", float64(d)/float64(time.Millisecond))
}

func mib(bytes int64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

func signedMiB(bytes int64) string {
	return fmt.Sprintf("%+.1f MiB", float64(bytes)/(1<<20))
}

func medianOf(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	if n := len(sorted); n%2 == 0 {
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return sorted[len(sorted)/2]
}
