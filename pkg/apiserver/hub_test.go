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

package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// delegating is the authorizer switchboard's options build (k8s.io/apiserver's
// delegating authorizer with its always-allowed paths and groups), asking
// the SubjectAccessReview API at host.
func delegating(t *testing.T, host string, timeout time.Duration) authorizer.Authorizer {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "hub.kubeconfig")
	config := clientcmdapi.NewConfig()
	config.Clusters["hub"] = &clientcmdapi.Cluster{Server: host}
	config.AuthInfos["switchboard"] = &clientcmdapi.AuthInfo{}
	config.Contexts["hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "switchboard"}
	config.CurrentContext = "hub"
	if err := clientcmd.WriteToFile(*config, kubeconfig); err != nil {
		t.Fatal(err)
	}
	o := genericoptions.NewDelegatingAuthorizationOptions()
	o.RemoteKubeConfigFile = kubeconfig
	o.ClientTimeout = timeout
	o.AllowCacheTTL, o.DenyCacheTTL = time.Minute, time.Minute
	o.WebhookRetryBackoff = &wait.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 2}
	var info genericapiserver.AuthorizationInfo
	if err := o.ApplyTo(&info); err != nil {
		t.Fatal(err)
	}
	return info.Authorizer
}

// sarServer answers SubjectAccessReviews: allowed while allow is true, and
// with the given HTTP status otherwise.
func sarServer(t *testing.T, allow *atomic.Bool, failWith int) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allow.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(failWith)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
				Code: int32(failWith), Reason: metav1.StatusReasonForbidden,
				Message: `subjectaccessreviews.authorization.k8s.io is forbidden: User "switchboard-apiserver" cannot create resource "subjectaccessreviews"`})
			return
		}
		var sar authorizationv1.SubjectAccessReview
		_ = json.NewDecoder(r.Body).Decode(&sar)
		sar.Status.Allowed = true
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&sar)
	}))
	t.Cleanup(s.Close)
	return s
}

func proxyAttributes(name string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: "alice", Groups: []string{"system:authenticated"}},
		Verb: "get", APIGroup: "cluster.switchboard.io", APIVersion: "v1alpha1",
		Resource: "clusters", Subresource: "proxy", Name: name, ResourceRequest: true,
	}
}

func TestFailClosed(t *testing.T) {
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedHost := "http://" + refused.Addr().String()
	_ = refused.Close()

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()

	var never atomic.Bool
	forbidding := sarServer(t, &never, http.StatusForbidden)

	for _, tc := range []struct {
		name, host, cause string
	}{
		{"the hub refuses connections", refusedHost, "SubjectAccessReview: the hub refused the connection"},
		{"the hub does not answer", "http://" + silent.Addr().String(), "SubjectAccessReview: the hub did not answer in time"},
		{"the hub forbids switchboard's reviews", forbidding.URL,
			`SubjectAccessReview: the hub answered 403 Forbidden: subjectaccessreviews.authorization.k8s.io is forbidden: User "switchboard-apiserver" cannot create resource "subjectaccessreviews"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := delegating(t, tc.host, 200*time.Millisecond)
			// What k8s.io/apiserver's filter would answer with a 500.
			if d, _, err := raw.Authorize(context.Background(), proxyAttributes("member1")); d == authorizer.DecisionAllow || err == nil {
				t.Fatalf("the delegating authorizer: %v, %v; want no decision and an error", d, err)
			}
			d, reason, err := FailClosed(raw).Authorize(context.Background(), proxyAttributes("member1"))
			if d != authorizer.DecisionDeny || err != nil {
				t.Fatalf("FailClosed: %v, %v; want a refusal and no error", d, err)
			}
			if !strings.HasPrefix(reason, "switchboard could not ask the hub whether to allow this request ("+tc.cause+"), and refuses") {
				t.Errorf("reason = %q, want it to say %q", reason, tc.cause)
			}
			for _, raw := range []string{"dial tcp", "127.0.0.1", "Post \"", "subjectaccessreviews?"} {
				if strings.Contains(reason, raw) {
					t.Errorf("reason holds the raw error (%q): %s", raw, reason)
				}
			}
		})
	}

	t.Run("a decision the hub made is kept while it is away", func(t *testing.T) {
		var allow atomic.Bool
		allow.Store(true)
		hub := sarServer(t, &allow, http.StatusServiceUnavailable)
		a := FailClosed(delegating(t, hub.URL, 200*time.Millisecond))
		if d, _, err := a.Authorize(context.Background(), proxyAttributes("member1")); d != authorizer.DecisionAllow || err != nil {
			t.Fatalf("with the hub up: %v, %v", d, err)
		}
		hub.Close()
		if d, _, err := a.Authorize(context.Background(), proxyAttributes("member1")); d != authorizer.DecisionAllow || err != nil {
			t.Errorf("the same request with the hub away, within the cache's TTL: %v, %v; want it allowed from the cache", d, err)
		}
		d, reason, err := a.Authorize(context.Background(), proxyAttributes("member2"))
		if d != authorizer.DecisionDeny || err != nil || !strings.Contains(reason, "the hub refused the connection") {
			t.Errorf("a request the hub was never asked about, with the hub away: %v, %q, %v; want a refusal that says why", d, reason, err)
		}
	})

	t.Run("decisions and errors of the hub pass through", func(t *testing.T) {
		for _, want := range []struct {
			d      authorizer.Decision
			reason string
			err    error
		}{
			{authorizer.DecisionAllow, "", nil},
			{authorizer.DecisionDeny, "RBAC: no", nil},
			{authorizer.DecisionNoOpinion, "", nil},
			// An authorizer that allows despite an error is believed.
			{authorizer.DecisionAllow, "", context.Canceled},
		} {
			d, reason, err := FailClosed(authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
				return want.d, want.reason, want.err
			})).Authorize(context.Background(), proxyAttributes("member1"))
			if d != want.d || reason != want.reason || !errors.Is(err, want.err) || (err == nil) != (want.err == nil) {
				t.Errorf("FailClosed of (%v, %q, %v) = (%v, %q, %v)", want.d, want.reason, want.err, d, reason, err)
			}
		}
	})
}

func TestHubReadyzCheck(t *testing.T) {
	var up atomic.Bool
	var asked atomic.Int32
	up.Store(true)
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"gitVersion":"v1.37.2"}`))
	}))
	t.Cleanup(hub.Close)
	client, err := kubernetes.NewForConfig(&rest.Config{Host: hub.URL})
	if err != nil {
		t.Fatal(err)
	}
	if name := HubReadyzCheck(client.Discovery().RESTClient()).Name(); name != "hub" {
		t.Errorf("name = %q", name)
	}
	c := &hubCheck{hub: client.Discovery().RESTClient()}
	req := httptest.NewRequest(http.MethodGet, "/readyz", nil)
	if err := c.check(req); err != nil {
		t.Errorf("with the hub up: %v", err)
	}
	// However often /readyz is called, the hub is asked once a second at
	// most (the client's rate limiter would otherwise fail the check).
	for range 500 {
		if err := c.check(req); err != nil {
			t.Fatalf("with the hub up, called again: %v", err)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("the hub was asked %d times for 501 checks within a second", n)
	}
	up.Store(false)
	c.checked = time.Time{}
	if err := c.check(req); err == nil || !strings.Contains(err.Error(), "the hub's API server does not answer GET /version") {
		t.Errorf("with the hub failing: %v", err)
	}
	hub.Close()
	c.checked = time.Time{}
	if err := c.check(req); err == nil {
		t.Error("with the hub gone: no error")
	}
}
