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
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// LoadResult is what a closed-loop load of small GETs measured on one path,
// possibly over several rounds.
type LoadResult struct {
	// Requests counts the successful requests; Elapsed is the time spent
	// measuring, summed over rounds.
	Requests int
	Elapsed  time.Duration
	// Latencies of the successful requests, unsorted.
	Latencies []time.Duration
	// Errors counts failed requests (transport errors, wrong status or body)
	// and FirstError is the first of them.
	Errors     int
	FirstError error
}

// Add merges another round into r.
func (r *LoadResult) Add(o LoadResult) {
	r.Requests += o.Requests
	r.Elapsed += o.Elapsed
	r.Latencies = append(r.Latencies, o.Latencies...)
	r.Errors += o.Errors
	if r.FirstError == nil {
		r.FirstError = o.FirstError
	}
}

// RPS is successful requests per second.
func (r *LoadResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile returns the q-quantile (0 < q <= 1) of the latencies, by the
// nearest-rank method.
func (r *LoadResult) Percentile(q float64) time.Duration {
	return percentile(r.Latencies, q)
}

func percentile(values []time.Duration, q float64) time.Duration {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// BodyCheck says whether a 200 response body is the expected data.
type BodyCheck func(body []byte) error

// ContainsAll checks that a body contains every one of the given snippets.
func ContainsAll(snippets ...string) BodyCheck {
	return func(body []byte) error {
		for _, s := range snippets {
			if !bytes.Contains(body, []byte(s)) {
				return fmt.Errorf("the body does not contain %s: %.200s", s, body)
			}
		}
		return nil
	}
}

// RunLoad sends GETs of memberPath on p from workers goroutines, each
// sending its next request as soon as the last one is answered (closed
// loop), for d. Every response must be 200 and pass check.
func RunLoad(ctx context.Context, p *Path, memberPath string, workers int, d time.Duration, check BodyCheck) LoadResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := time.Now().Add(d)
	results := make([]LoadResult, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			res := &results[w]
			var buf bytes.Buffer
			for time.Now().Before(deadline) && ctx.Err() == nil {
				began := time.Now()
				err := getOnce(ctx, p, memberPath, &buf, check)
				took := time.Since(began)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					res.Errors++
					if res.FirstError == nil {
						res.FirstError = fmt.Errorf("%s GET %s: %w", p.Key, memberPath, err)
					}
					continue
				}
				res.Requests++
				res.Latencies = append(res.Latencies, took)
			}
		})
	}
	wg.Wait()
	total := LoadResult{Elapsed: time.Since(start)}
	for _, r := range results {
		total.Requests += r.Requests
		total.Latencies = append(total.Latencies, r.Latencies...)
		total.Errors += r.Errors
		if total.FirstError == nil {
			total.FirstError = r.FirstError
		}
	}
	if ctx.Err() != nil && total.FirstError == nil {
		total.FirstError = ctx.Err()
	}
	return total
}

// getOnce sends one GET and checks the answer. buf is reused between calls.
func getOnce(ctx context.Context, p *Path, memberPath string, buf *bytes.Buffer, check BodyCheck) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := p.NewRequest(ctx, http.MethodGet, memberPath)
	if err != nil {
		return err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.300s", resp.StatusCode, buf.Bytes())
	}
	if check != nil {
		return check(buf.Bytes())
	}
	return nil
}
