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

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
	"github.com/switchboard-io/switchboard/test/topology"
)

// healthWait bounds how long a status change may take to show: a few probe
// intervals plus the time to write status.
var healthWait = 10*topology.ProbeInterval + 10*time.Second

// waitForReady waits until a Cluster's Ready condition has the status and reason.
func waitForReady(t *testing.T, name string, status metav1.ConditionStatus, reason string) *v1alpha1.Cluster {
	t.Helper()
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	var last *v1alpha1.Cluster
	eventually(t, healthWait, func() error {
		c, err := clusters.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = c
		ready := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil || ready.Status != status || ready.Reason != reason {
			return fmt.Errorf("cluster %s Ready = %+v, want %s/%s", name, ready, status, reason)
		}
		return nil
	})
	return last
}

// rawThroughHub makes one request through the hub without client-go's
// retries, which honour Retry-After, so that the answer is what switchboard
// sent at once.
func rawThroughHub(t *testing.T, path string) (int, string) {
	t.Helper()
	config := f.HubConfig(t)
	client, err := rest.HTTPClientFor(config)
	if err != nil {
		t.Fatal(err)
	}
	client.Timeout = 30 * time.Second
	resp, err := client.Get(config.Host + path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestMemberHealth follows members going away and coming back: status,
// events, fast failure in the proxy, and the credential check.
func TestMemberHealth(t *testing.T) {
	hub := f.State.Hub.Kubeconfig
	for _, m := range f.State.Members {
		c := waitForReady(t, m.Name, metav1.ConditionTrue, v1alpha1.ReasonProbed)
		if c.Status.KubernetesVersion != "v1.37.2" || c.Status.LastProbeTime == nil || c.Status.ProbeLatency == nil {
			t.Errorf("%s status = %+v", m.Name, c.Status)
		}
		credentials := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionCredentialsValid)
		if credentials == nil || credentials.Status != metav1.ConditionTrue {
			t.Errorf("%s CredentialsValid = %+v", m.Name, credentials)
		}
	}
	out := framework.MustKubectl(t, hub, "wait", "--for=condition=Ready", "cluster/member1", "--timeout=60s")
	if !strings.Contains(out, "cluster.cluster.switchboard.io/member1 condition met") {
		t.Errorf("kubectl wait: %s", out)
	}
	out = framework.MustKubectl(t, hub, "get", "clusters", "-o", "wide")
	if !strings.Contains(out, "LATENCY") || !strings.Contains(out, "REASON") || !lineHas(out, "member1", "True", "v1.37.2", "Probed") {
		t.Errorf("kubectl get clusters -o wide:\n%s", out)
	}

	t.Run("a member that stops is Unreachable and fails fast, and comes back", func(t *testing.T) {
		restart := stopProcess(t, "member2-kube-apiserver")

		waitForReady(t, "member2", metav1.ConditionFalse, v1alpha1.ReasonUnreachable)
		out := framework.MustKubectl(t, hub, "get", "clusters", "-o", "wide")
		if !lineHas(out, "member2", "False", "Unreachable") {
			t.Errorf("kubectl get clusters -o wide while member2 is down:\n%s", out)
		}
		// Straight from switchboard's own view: no dial, the last probe's error.
		code, body := rawThroughHub(t, proxyPrefix+"member2/proxy/version")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `cluster \"member2\" is unreachable: its last probe`) {
			t.Errorf("member2 while down: %d %s", code, body)
		}
		code, body = rawThroughHub(t, proxyPrefix+"member1/proxy/version")
		if code != http.StatusOK || !strings.Contains(body, "v1.37.2") {
			t.Errorf("member1 while member2 is down: %d %s", code, body)
		}
		knownDownFailsAtOnce(t, hub)
		events := framework.MustKubectl(t, hub, "get", "events", "-n", "default", "--field-selector", "involvedObject.name=member2")
		if !lineHas(events, "Warning", "Unreachable", "cluster/member2") {
			t.Errorf("no Warning event for member2:\n%s", events)
		}

		restart()
		waitForReady(t, "member2", metav1.ConditionTrue, v1alpha1.ReasonProbed)
		eventually(t, healthWait, func() error {
			if code, body := rawThroughHub(t, proxyPrefix+"member2/proxy/version"); code != http.StatusOK {
				return fmt.Errorf("member2 after restart: %d %s", code, body)
			}
			return nil
		})
	})

	t.Run("a corrupted credential is reported and the proxy names the cause", func(t *testing.T) {
		ctx := context.Background()
		secrets := f.Hub(t).CoreV1().Secrets(join.DefaultHubNamespace)
		secret, err := secrets.Get(ctx, join.SecretName("member1"), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		secret.Data[v1alpha1.SecretKeyToken] = []byte("not-a-valid-token")
		if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// join repairs the credential, as an administrator would.
			mustPlugin(t, "join", "member1", "--member-kubeconfig", f.MemberAdminKubeconfig(t, "member1"))
			waitForReady(t, "member1", metav1.ConditionTrue, v1alpha1.ReasonProbed)
		})

		c := waitForReady(t, "member1", metav1.ConditionFalse, v1alpha1.ReasonUnauthorized)
		credentials := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionCredentialsValid)
		if credentials == nil || credentials.Status != metav1.ConditionFalse || credentials.Reason != v1alpha1.ReasonUnauthorized {
			t.Errorf("CredentialsValid = %+v", credentials)
		}
		code, body := rawThroughHub(t, proxyPrefix+"member1/proxy/version")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `rejected switchboard's credential`) {
			t.Errorf("proxy with a corrupted credential: %d %s", code, body)
		}
	})

	t.Run("metrics move", func(t *testing.T) {
		before := switchboardMetric(t, `switchboard_proxy_requests_total{cluster="member1",code="200",verb="get"}`)
		for i := 0; i < 3; i++ {
			if code, body := rawThroughHub(t, proxyPrefix+"member1/proxy/version"); code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
		}
		after := switchboardMetric(t, `switchboard_proxy_requests_total{cluster="member1",code="200",verb="get"}`)
		if after < before+3 {
			t.Errorf("switchboard_proxy_requests_total for member1 went from %v to %v after 3 requests", before, after)
		}
		if probes := switchboardMetric(t, `switchboard_health_probes_total{cluster="member2",result="Unreachable"}`); probes < 1 {
			t.Errorf("no Unreachable probe of member2 counted: %v", probes)
		}
		if errs := switchboardMetric(t, `switchboard_proxy_upstream_errors_total{cluster="member2",reason="down"}`); errs < 1 {
			t.Errorf("no fast failure of member2 counted: %v", errs)
		}
	})
}

// switchboardMetric reads one sample from switchboard's /metrics, as the
// hub's aggregator would call it for an administrator (the front-proxy
// certificate, the admin's identity in headers).
func switchboardMetric(t *testing.T, series string) float64 {
	t.Helper()
	client := directClient(t, f.State.FrontProxy.ClientCert, f.State.FrontProxy.ClientKey)
	code, body := directGet(t, client, f.State.Switchboard.URL+"/metrics", map[string]string{
		"X-Remote-User": "admin", "X-Remote-Group": "system:masters",
	})
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	match := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if match == nil {
		return 0
	}
	v, err := strconv.ParseFloat(match[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// knownDownFailsAtOnce: kubectl gives up on a member the last probe found
// unreachable after one request, with switchboard's message. A 503 with
// Retry-After would make client-go try ten times, a second apart.
func knownDownFailsAtOnce(t *testing.T, hub string) {
	t.Helper()
	const down = `switchboard_proxy_upstream_errors_total{cluster="member2",reason="down"}`
	before := switchboardMetric(t, down)
	start := time.Now()
	r := framework.Kubectl(t, hub, "get", "--raw", proxyPrefix+"member2/proxy/api")
	took := time.Since(start)
	after := switchboardMetric(t, down)
	t.Logf("kubectl get --raw of a member known to be down failed after %s", took.Round(time.Millisecond))
	if r.Err == nil || !strings.Contains(r.Stderr, `cluster "member2" is unreachable: its last probe`) {
		t.Errorf("kubectl get --raw of a down member: err=%v\nstderr: %s", r.Err, r.Stderr)
	}
	if n := after - before; n != 1 {
		t.Errorf("kubectl sent %v requests for a member known to be down, want 1 (no retries)", n)
	}

	// Every kubectl command through a member kubeconfig, discovery first.
	admin := &framework.User{Name: "admin", Kubeconfig: hub}
	kubeconfig := admin.MemberKubeconfig(t, "member2")
	before = switchboardMetric(t, down)
	start = time.Now()
	// An empty discovery cache, as on a new machine: discovery goes first.
	r = framework.Kubectl(t, kubeconfig, "get", "pods", "-n", "workloads", "-v=6", "--cache-dir", t.TempDir())
	took = time.Since(start)
	after = switchboardMetric(t, down)
	t.Logf("kubectl get pods through a member kubeconfig of a member known to be down failed after %s, with %v requests; stderr:\n%s",
		took.Round(time.Millisecond), after-before, lastLines(r.Stderr, 3))
	// Discovery comes first and fails; client-go shows only a fixed text
	// for its 503, so switchboard's message comes as a warning.
	if r.Err == nil || !strings.Contains(r.Stderr, `Warning: cluster "member2" is unreachable: its last probe`) {
		t.Errorf("kubectl get pods of a down member: err=%v\nstderr: %s", r.Err, lastLines(r.Stderr, 5))
	}
	for _, line := range strings.Split(r.Stderr, "\n") {
		if strings.Contains(line, "Got a Retry-After") {
			t.Errorf("kubectl waited for a retry: %s", line)
		}
	}
}

// lastLines is the end of out, for messages.
func lastLines(out string, n int) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
