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

package health

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// The cluster label holds Cluster names: as many values as members, which
// a hub counts in tens or hundreds, not more.
var (
	probesTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_health",
		Name:           "probes_total",
		Help:           "Probes of member clusters by cluster and result (the Ready reason). The cluster label has one value per member cluster.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "result"})
	probeDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      "switchboard_health",
		Name:           "probe_duration_seconds",
		Help:           "How long probes of member clusters take, by cluster. The cluster label has one value per member cluster.",
		Buckets:        []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	registerOnce sync.Once
)

// RegisterMetrics registers the prober's metrics, once.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(probesTotal, probeDuration)
	})
}

func recordProbe(cluster string, r *Result) {
	probesTotal.WithLabelValues(cluster, r.ReadyReason).Inc()
	if r.Duration > 0 {
		probeDuration.WithLabelValues(cluster).Observe(r.Duration.Seconds())
	}
}
