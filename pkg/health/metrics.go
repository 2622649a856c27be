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

	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
)

// The cluster label holds the names of existing Clusters: as many values as
// members, which a hub counts in tens or hundreds, not more. A probe that
// ends after its Cluster was deleted is not recorded.
var (
	probesTotal = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_health",
		Name:           "probes_total",
		Help:           "Probes of member clusters by cluster and result (the Ready reason). The cluster label has one value per existing Cluster.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster", "result"})
	probeDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Subsystem:      "switchboard_health",
		Name:           "probe_duration_seconds",
		Help:           "How long probes of member clusters take, by cluster. The cluster label has one value per existing Cluster.",
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

// recordProbe records a probe of the Cluster named cluster, unless the
// Cluster is gone by now: its series were deleted with it and stay so.
func recordProbe(cluster string, r *Result) {
	clusterlabel.RecordIfCluster(cluster, func() {
		probesTotal.WithLabelValues(cluster, r.ReadyReason).Inc()
		if r.Duration > 0 {
			probeDuration.WithLabelValues(cluster).Observe(r.Duration.Seconds())
		}
	})
}

// forgetProbes deletes the probe series of a deleted Cluster.
func forgetProbes(cluster string) {
	clusterlabel.Forget(cluster, func() {
		series := map[string]string{"cluster": cluster}
		probesTotal.DeletePartialMatch(series)
		probeDuration.DeletePartialMatch(series)
	})
}
