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
	"strconv"
	"strings"
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
