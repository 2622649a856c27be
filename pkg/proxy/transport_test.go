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

package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// get sends one GET as alice and expects the member's 200.
func (f *fixture) get(t *testing.T) {
	t.Helper()
	rec, responder := f.serve(t, testCluster, "/api/v1/pods", newProxyRequest(http.MethodGet, testCluster, "/api/v1/pods", "", nil, alice))
	responder.noErrors(t)
	if rec.Code != http.StatusOK {
		t.Fatalf("answer = %d %q", rec.Code, rec.Body.String())
	}
}

// checkCounts checks how many transports were built and how many
// connections the member saw opened.
func checkCounts(t *testing.T, f *fixture, mem *member, builds int, conns int64) {
	t.Helper()
	if got := f.transports.Builds(); got != builds {
		t.Errorf("Builds() = %d, want %d", got, builds)
	}
	if got := mem.newConns.Load(); got != conns {
		t.Errorf("the member saw %d connections opened, want %d", got, conns)
	}
}

func TestTransportIsReused(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			mem := newMember(t, nil, withHTTP2(h2))
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			for i := range 25 {
				method, body := http.MethodGet, ""
				if i%3 == 0 {
					method, body = http.MethodPost, `{"kind":"ConfigMap"}`
				}
				rec, responder := f.serve(t, testCluster, "/api/v1/namespaces/dev/configmaps",
					newProxyRequest(method, testCluster, "/api/v1/namespaces/dev/configmaps", "", strings.NewReader(body), alice))
				responder.noErrors(t)
				if rec.Code != http.StatusOK {
					t.Fatalf("request %d: %d %q", i, rec.Code, rec.Body.String())
				}
			}
			checkCounts(t, f, mem, 1, 1)
			wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
			if got := mem.last(t).Proto; got != wantProto {
				t.Errorf("protocol = %s, want %s", got, wantProto)
			}
		})
	}
}

func TestTransportRebuiltWhenTheTokenChanges(t *testing.T) {
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, testCluster, mem, "")
	f.get(t)
	f.get(t)
	checkCounts(t, f, mem, 1, 1)

	s := f.secret(t, secretName(testCluster))
	s.Data[v1alpha1.SecretKeyToken] = []byte("rotated-token")
	f.putSecret(t, s)
	f.get(t)

	checkCounts(t, f, mem, 2, 2)
	if got := mem.last(t).Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer rotated-token" {
		t.Errorf("Authorization after the rotation = %q, want the new token only", got)
	}
	// The replaced transport's idle connection is closed.
	eventually(t, "the old idle connection to close", func() bool { return mem.closedConns.Load() >= 1 })
}

func TestTransportKeptWhenNothingItIsBuiltFromChanges(t *testing.T) {
	cases := []struct {
		name   string
		change func(*testing.T, *fixture)
	}{
		{"Cluster status update", func(t *testing.T, f *fixture) {
			cl := f.cluster(t, testCluster)
			cl.Status.KubernetesVersion = "v1.37.2"
			cl.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Probed", LastTransitionTime: metav1.Now()}}
			f.putCluster(t, cl)
		}},
		{"Cluster label update", func(t *testing.T, f *fixture) {
			cl := f.cluster(t, testCluster)
			cl.Labels = map[string]string{"env": "prod"}
			f.putCluster(t, cl)
		}},
		{"Secret annotation update", func(t *testing.T, f *fixture) {
			s := f.secret(t, secretName(testCluster))
			s.Annotations = map[string]string{"rotated-by": "nobody"}
			f.putSecret(t, s)
		}},
		{"Secret token rewritten with surrounding whitespace", func(t *testing.T, f *fixture) {
			s := f.secret(t, secretName(testCluster))
			s.Data[v1alpha1.SecretKeyToken] = []byte(testToken + "\n")
			f.putSecret(t, s)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMember(t, nil)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			f.get(t)

			tc.change(t, f)
			f.get(t)
			f.get(t)

			checkCounts(t, f, mem, 1, 1)
			if got := mem.last(t).Header.Get("Authorization"); got != "Bearer "+testToken {
				t.Errorf("Authorization = %q", got)
			}
		})
	}
}

func TestTransportRebuiltWhenTheEndpointChanges(t *testing.T) {
	first, second := newMember(t, nil), newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, testCluster, first, "")
	f.get(t)

	cl := f.cluster(t, testCluster)
	cl.Spec.Endpoint = second.srv.URL
	// Both members' certificates are httptest's, so the CA is the same.
	f.putCluster(t, cl)
	f.get(t)

	if got := f.transports.Builds(); got != 2 {
		t.Errorf("Builds() = %d, want 2", got)
	}
	if len(first.requests()) != 1 || len(second.requests()) != 1 {
		t.Errorf("requests: first member %d, second %d; want 1 and 1", len(first.requests()), len(second.requests()))
	}
}

func TestBrokenSecretStopsTheTransport(t *testing.T) {
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, testCluster, mem, "")
	f.get(t)

	good := f.secret(t, secretName(testCluster))
	broken := good.DeepCopy()
	delete(broken.Data, v1alpha1.SecretKeyToken)
	f.putSecret(t, broken)
	_, err := f.connect(context.Background(), testCluster, "/api", &recordingResponder{})
	checkStatus(t, statusOf(t, err), http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster,
		"its credentials Secret switchboard-system/"+secretName(testCluster)+" is not usable: it holds no credential")

	f.putSecret(t, good)
	f.get(t)
	if n := len(mem.requests()); n != 2 {
		t.Errorf("the member received %d requests, want 2", n)
	}
}

func TestForgetDropsTheTransport(t *testing.T) {
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, testCluster, mem, "")
	f.get(t)
	checkCounts(t, f, mem, 1, 1)

	f.transports.Forget(testCluster)
	eventually(t, "the forgotten transport's idle connection to close", func() bool { return mem.closedConns.Load() == 1 })
	f.transports.Forget("never-seen") // no-op

	f.get(t)
	checkCounts(t, f, mem, 2, 2)
}
