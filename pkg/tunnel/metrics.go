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

package tunnel

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
)

// Tunnels are taken only for existing Clusters, so the cluster label holds
// the names of existing Clusters, and the series of a deleted one go with it.
var (
	agentsConnected = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      "switchboard_tunnel",
		Name:           "agents_connected",
		Help:           "Tunnels that switchboard-agents hold to this replica, by cluster." + clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	tunnelsOpened = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_tunnel",
		Name:           "connects_total",
		Help:           "Tunnels that switchboard-agents opened to this replica, by cluster; beyond the first, each is a reconnect." + clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	streamsOpened = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "switchboard_tunnel",
		Name:           "streams_opened_total",
		Help:           "Streams this replica opened to members through their tunnels, by cluster: one per connection to the member's API server." + clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	streamsOpen = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Subsystem:      "switchboard_tunnel",
		Name:           "streams_open",
		Help:           "Streams open from this replica to members through their tunnels, by cluster." + clusterlabel.Help,
		StabilityLevel: metrics.ALPHA,
	}, []string{"cluster"})
	registerOnce sync.Once
)

// RegisterMetrics registers the tunnel metrics, once.
func RegisterMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(agentsConnected, tunnelsOpened, streamsOpened, streamsOpen)
	})
}

// record writes a series of the Cluster, unless it is gone by now.
func record(cluster string, fn func()) {
	clusterlabel.RecordIfCluster(cluster, fn)
}

// forgetMetrics deletes the series of a deleted Cluster.
func forgetMetrics(cluster string) {
	clusterlabel.Forget(cluster, func() {
		series := map[string]string{"cluster": cluster}
		agentsConnected.DeletePartialMatch(series)
		tunnelsOpened.DeletePartialMatch(series)
		streamsOpened.DeletePartialMatch(series)
		streamsOpen.DeletePartialMatch(series)
	})
}
