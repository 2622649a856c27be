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

// The metrics are global: every test here uses its own cluster names.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
)

// probeSeries returns the switchboard_health_* series whose cluster label
// is cluster, as name{cluster=...,...}.
func probeSeries(t *testing.T, cluster string) []string {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var out []string
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "switchboard_health_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			mine := false
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
				mine = mine || l.GetName() == "cluster" && l.GetValue() == cluster
			}
			if mine {
				out = append(out, mf.GetName()+"{"+strings.Join(labels, ",")+"}")
			}
		}
	}
	return out
}

// A deleted Cluster leaves no probe series, not even from a probe that was
// under way when it went and ends afterwards.
func TestProbeMetricsOfADeletedCluster(t *testing.T) {
	RegisterMetrics()
	h := newHarness(t, "metrics-health-deleted")
	// As the server does: the metrics' cluster label holds the names in
	// the Clusters' lister.
	clusterlabel.Use(listers.NewClusterLister(h.clusters))
	t.Cleanup(func() { clusterlabel.Use(nil) })

	h.sync()
	before := strings.Join(probeSeries(t, h.name), " ")
	for _, metric := range []string{"probes_total", "probe_duration_seconds"} {
		if !strings.Contains(before, "switchboard_health_"+metric+"{") {
			t.Fatalf("no switchboard_health_%s series of %s after a probe: %q", metric, h.name, before)
		}
	}

	// A probe that the member holds until the Cluster is gone.
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	h.member.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		answerHealthy(w, r)
	})
	synced := make(chan error, 1)
	go func() { synced <- h.c.sync(context.Background(), h.name) }()
	select {
	case <-arrived:
	case <-time.After(testTimeout):
		t.Fatal("the probe did not reach the member")
	}

	// What the informer does: the lister loses the Cluster, then the
	// delete event comes.
	cl := newCluster(h.name, h.member.url())
	if err := h.clusters.Delete(cl); err != nil {
		t.Fatal(err)
	}
	h.c.ClusterHandler().OnDelete(cl)
	if got := probeSeries(t, h.name); len(got) != 0 {
		t.Errorf("series of the deleted Cluster: %v", got)
	}

	close(release)
	select {
	case err := <-synced:
		if err != nil {
			t.Logf("the probe's sync: %v", err)
		}
	case <-time.After(2 * testTimeout):
		t.Fatal("the probe did not end")
	}
	if got := probeSeries(t, h.name); len(got) != 0 {
		t.Errorf("a probe that outlived its Cluster brought its series back: %v", got)
	}
}
