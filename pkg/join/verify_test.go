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

package join

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// scriptedHub answers the check through the hub with one answer after
// another, the last one for good, and counts the requests.
type scriptedHub struct {
	mu       sync.Mutex
	answers  []func(w http.ResponseWriter)
	requests int
}

func (h *scriptedHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	answer := h.answers[min(h.requests, len(h.answers)-1)]
	h.requests++
	h.mu.Unlock()
	if r.URL.Path != "/apis/cluster.switchboard.io/v1alpha1/clusters/prod/proxy/version" {
		http.Error(w, "unexpected path "+r.URL.Path, http.StatusTeapot)
		return
	}
	answer(w)
}

func (h *scriptedHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests
}

func status(code int32, reason metav1.StatusReason, message string, details *metav1.StatusDetails, retryAfter bool) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		if retryAfter {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(int(code))
		_ = json.NewEncoder(w).Encode(metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Code: code, Reason: reason, Message: message, Details: details,
		})
	}
}

func version(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"gitVersion":"v1.37.2"}`))
}

var (
	clusterNotSeen = status(404, metav1.StatusReasonNotFound, `clusters.cluster.switchboard.io "prod" not found`,
		&metav1.StatusDetails{Group: "cluster.switchboard.io", Kind: "clusters", Name: "prod"}, false)
	notSynced = status(503, metav1.StatusReasonServiceUnavailable,
		`cluster "prod" cannot be reached yet: switchboard is starting and its caches of Clusters and credentials are not synced`,
		&metav1.StatusDetails{Group: "cluster.switchboard.io", Kind: "clusters", Name: "prod", RetryAfterSeconds: 1}, true)
	memberNotFound = status(404, metav1.StatusReasonNotFound, "the server could not find the requested resource", nil, false)
	unreachable    = status(503, metav1.StatusReasonServiceUnavailable, `cluster "prod" is unreachable at https://127.0.0.1:1: connection refused`,
		&metav1.StatusDetails{Group: "cluster.switchboard.io", Kind: "clusters", Name: "prod"}, false)
)

// The check through the hub waits while switchboard has not seen the
// Cluster or is starting, and believes any other failure once it has
// lasted verifySettle; it never waits out Retry-After.
func TestVerifyThroughHub(t *testing.T) {
	settle := verifySettle
	verifySettle = 300 * time.Millisecond
	t.Cleanup(func() { verifySettle = settle })

	for _, tc := range []struct {
		name     string
		answers  []func(http.ResponseWriter)
		wantErr  string
		requests func(n int) bool
	}{{
		name:     "switchboard sees the Cluster after a moment",
		answers:  []func(http.ResponseWriter){clusterNotSeen, clusterNotSeen, clusterNotSeen, version},
		requests: func(n int) bool { return n == 4 },
	}, {
		name:     "switchboard is starting",
		answers:  []func(http.ResponseWriter){notSynced, notSynced, notSynced, version},
		requests: func(n int) bool { return n == 4 },
	}, {
		name:     "the endpoint is no Kubernetes API server",
		answers:  []func(http.ResponseWriter){memberNotFound},
		wantErr:  "the server could not find the requested resource",
		requests: func(n int) bool { return n >= 2 && n <= 3 },
	}, {
		name:     "the member cannot be reached",
		answers:  []func(http.ResponseWriter){unreachable},
		wantErr:  `cluster "prod" is unreachable at https://127.0.0.1:1`,
		requests: func(n int) bool { return n >= 2 && n <= 3 },
	}, {
		// Once each: client-go's retries on Retry-After would make it 11
		// requests a time.
		name: "the member cannot be reached, with Retry-After",
		answers: []func(http.ResponseWriter){status(503, metav1.StatusReasonServiceUnavailable, `cluster "prod" is unreachable`,
			&metav1.StatusDetails{Group: "cluster.switchboard.io", Kind: "clusters", Name: "prod", RetryAfterSeconds: 1}, true)},
		wantErr:  `cluster "prod" is unreachable`,
		requests: func(n int) bool { return n >= 2 && n <= 3 },
	}} {
		t.Run(tc.name, func(t *testing.T) {
			hub := &scriptedHub{answers: tc.answers}
			srv := httptest.NewServer(hub)
			t.Cleanup(srv.Close)
			o := &Options{Name: testName, HubConfig: &rest.Config{Host: srv.URL}, VerifyTimeout: 30 * time.Second}
			got, err := o.verifyThroughHub(context.Background())
			switch {
			case tc.wantErr == "" && (err != nil || !strings.Contains(got, "Kubernetes v1.37.2")):
				t.Errorf("verify = %q, %v; want the version", got, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("verify = %q, %v; want an error with %q", got, err, tc.wantErr)
			}
			if n := hub.count(); !tc.requests(n) {
				t.Errorf("%d requests through the hub", n)
			}
		})
	}
}
