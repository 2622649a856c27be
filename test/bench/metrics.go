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
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/component-base/metrics/testutil"
)

// GoStats are a Go server's runtime figures from its /metrics: they say
// where memory goes, which RSS alone does not.
type GoStats struct {
	Goroutines float64
	// HeapInuse and StackInuse are bytes.
	HeapInuse, StackInuse float64
}

// goStatsMetrics maps metric names to the field they fill.
var goStatsMetrics = map[string]func(*GoStats) *float64{
	"go_goroutines":                 func(s *GoStats) *float64 { return &s.Goroutines },
	"go_memstats_heap_inuse_bytes":  func(s *GoStats) *float64 { return &s.HeapInuse },
	"go_memstats_stack_inuse_bytes": func(s *GoStats) *float64 { return &s.StackInuse },
}

// ReadGoStats reads /metrics on p (whose base must be the server's root).
func ReadGoStats(ctx context.Context, p *Path) (GoStats, error) {
	var s GoStats
	code, body, _, err := p.Get(ctx, "/metrics")
	if err != nil {
		return s, err
	}
	if code != 200 {
		return s, fmt.Errorf("/metrics: status %d: %.200s", code, body)
	}
	found := 0
	scanner := bufio.NewScanner(bytes.NewReader(body))
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), " ")
		field := goStatsMetrics[name]
		if !ok || field == nil {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return s, fmt.Errorf("/metrics: %s: %w", name, err)
		}
		*field(&s) = v
		found++
	}
	if err := scanner.Err(); err != nil {
		return s, err
	}
	if found != len(goStatsMetrics) {
		return s, fmt.Errorf("/metrics lacks some of the Go runtime metrics")
	}
	return s, nil
}

// TunnelMetrics are switchboard's figures of one cluster's tunnel, from its
// /metrics (pkg/tunnel).
type TunnelMetrics struct {
	// AgentsConnected and StreamsOpen are gauges; StreamsOpened and
	// Connects are counters.
	AgentsConnected, StreamsOpen, StreamsOpened, Connects float64
}

// tunnelMetrics maps the series' names to the field they fill.
var tunnelMetrics = map[string]func(*TunnelMetrics) *float64{
	"switchboard_tunnel_agents_connected":     func(m *TunnelMetrics) *float64 { return &m.AgentsConnected },
	"switchboard_tunnel_streams_open":         func(m *TunnelMetrics) *float64 { return &m.StreamsOpen },
	"switchboard_tunnel_streams_opened_total": func(m *TunnelMetrics) *float64 { return &m.StreamsOpened },
	"switchboard_tunnel_connects_total":       func(m *TunnelMetrics) *float64 { return &m.Connects },
}

// ReadTunnelMetrics reads the tunnel metrics of cluster from /metrics on p
// (whose base must be the server's root).
func ReadTunnelMetrics(ctx context.Context, p *Path, cluster string) (TunnelMetrics, error) {
	code, body, _, err := p.Get(ctx, "/metrics")
	if err != nil {
		return TunnelMetrics{}, err
	}
	if code != 200 {
		return TunnelMetrics{}, fmt.Errorf("/metrics: status %d: %.200s", code, body)
	}
	return parseTunnelMetrics(body, cluster)
}

// parseTunnelMetrics reads the series of cluster in a Prometheus text
// exposition. Each must be there: a tunnel that carried the health
// prober's requests has them all.
func parseTunnelMetrics(body []byte, cluster string) (TunnelMetrics, error) {
	var m TunnelMetrics
	families, err := testutil.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return m, fmt.Errorf("/metrics: %w", err)
	}
	series := map[string]string{"cluster": cluster}
	var missing []string
	for name, field := range tunnelMetrics {
		found := false
		for _, metric := range families[name].GetMetric() {
			if !testutil.LabelsMatch(metric, series) {
				continue
			}
			switch {
			case metric.GetGauge() != nil:
				*field(&m) = metric.GetGauge().GetValue()
			case metric.GetCounter() != nil:
				*field(&m) = metric.GetCounter().GetValue()
			default:
				return m, fmt.Errorf("/metrics: %s is neither a gauge nor a counter", name)
			}
			found = true
			break
		}
		if !found {
			missing = append(missing, fmt.Sprintf("%s{cluster=%q}", name, cluster))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return m, fmt.Errorf("/metrics lacks %s: does switchboard hold a tunnel of %s?", strings.Join(missing, ", "), cluster)
	}
	return m, nil
}
