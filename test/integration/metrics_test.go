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

package integration

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/component-base/metrics/testutil"

	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
)

// clusterLabelValues scrapes /metrics and returns, for every cluster label
// value of switchboard's own metrics, the metrics that carry it.
func clusterLabelValues(ctx context.Context, s *testServer) (map[string][]string, error) {
	code, body := get(ctx, s.httpClient(s.adminConfig()), s.host+"/metrics")
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics = %d %s", code, body)
	}
	families, err := testutil.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	values := map[string][]string{}
	for name, mf := range families {
		if !strings.HasPrefix(name, "switchboard_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cluster" {
					values[l.GetValue()] = append(values[l.GetValue()], name)
				}
			}
		}
	}
	for _, names := range values {
		sort.Strings(names)
	}
	return values, nil
}

// TestMetricsClusterLabelIsBounded: requests for names that no Cluster has
// share one label value, and a deleted Cluster's series go with it.
func TestMetricsClusterLabelIsBounded(t *testing.T) {
	const member = "metrics-member"
	const ghosts = "metrics-ghost-"
	p := newPKI(t)
	s := startServer(t, p, dataDirArg(t.TempDir()))
	ctx := ctxFor(t)
	clusters := s.clientset().ClusterV1alpha1().Clusters()
	client := s.httpClient(s.adminConfig())
	proxyURL := func(name string) string {
		return s.host + "/apis/cluster.switchboard.io/v1alpha1/clusters/" + name + "/proxy/api/v1/namespaces"
	}

	if _, err := clusters.Create(ctx, newCluster(member, "https://10.0.0.12:6443"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Without a hub there are no credentials: the member's requests are
	// refused with a 503, and counted under its name, once the proxy's
	// cache holds the Cluster (404 before).
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		code, body := get(ctx, client, proxyURL(member))
		last = fmt.Sprintf("%d %s", code, body)
		return code == http.StatusServiceUnavailable, nil
	})
	if err != nil {
		t.Fatalf("the member's proxy never answered 503: %v (last: %s)", err, last)
	}
	for i := range 50 {
		if code, body := get(ctx, client, proxyURL(fmt.Sprintf("%s%d", ghosts, i))); code != http.StatusNotFound {
			t.Fatalf("GET for a name no Cluster has = %d %s, want 404", code, body)
		}
	}
	// Refused before the name is looked up: a dot segment.
	dots := s.host + "/apis/cluster.switchboard.io/v1alpha1/clusters/" + ghosts + "dots/proxy/api/%2E%2E/secrets"
	if code, body := get(ctx, client, dots); code != http.StatusBadRequest {
		t.Fatalf("GET of a path with a dot segment = %d %s, want 400", code, body)
	}
	// The prober records the member too.
	var values map[string][]string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		scraped, err := clusterLabelValues(ctx, s)
		if err != nil {
			return false, err
		}
		values = scraped
		got := strings.Join(values[member], " ")
		return strings.Contains(got, "switchboard_health_probes_total") && strings.Contains(got, "switchboard_proxy_requests_total"), nil
	})
	if err != nil {
		t.Fatalf("no requests_total and probes_total series of %s: %v (cluster label values: %v)", member, err, values)
	}
	for value := range values {
		if strings.HasPrefix(value, ghosts) {
			t.Errorf("a name no Cluster has is a cluster label value: %s in %v", value, values[value])
		}
	}
	if got := values[clusterlabel.Unknown]; len(got) == 0 {
		t.Errorf("no series with cluster=%s; cluster label values: %v", clusterlabel.Unknown, values)
	}

	if err := clusters.Delete(ctx, member, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		scraped, err := clusterLabelValues(ctx, s)
		if err != nil {
			return false, err
		}
		values = scraped
		_, found := values[member]
		return !found, nil
	})
	if err != nil {
		t.Fatalf("the deleted Cluster's series stayed: %v (%s: %v)", err, member, values[member])
	}
	// Its name is now one that no Cluster has.
	if code, body := get(ctx, client, proxyURL(member)); code != http.StatusNotFound {
		t.Fatalf("GET for the deleted Cluster = %d %s, want 404", code, body)
	}
	if values, err = clusterLabelValues(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, found := values[member]; found {
		t.Errorf("a request for the deleted Cluster brought its series back: %v", got)
	}
}
