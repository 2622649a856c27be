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
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// switchableCheck is a storage probe whose answer the test sets.
type switchableCheck struct{ err atomic.Pointer[error] }

func (c *switchableCheck) set(err error) { c.err.Store(&err) }

func (c *switchableCheck) check() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func serve(h http.Handler, info *request.RequestInfo) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/apis/cluster.switchboard.io/v1alpha1/clusters/member1", nil)
	if info != nil {
		req = req.WithContext(request.WithRequestInfo(req.Context(), info))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestStorageGate(t *testing.T) {
	probe := &switchableCheck{}
	health := NewStorageHealth(probe.check)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go health.Run(ctx)

	inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	gated := WithStorageGate(inner, health)

	getCluster := &request.RequestInfo{IsResourceRequest: true, Verb: "get", APIGroup: "cluster.switchboard.io", APIVersion: "v1alpha1", Resource: "clusters", Name: "member1"}
	updateStatus := &request.RequestInfo{IsResourceRequest: true, Verb: "update", APIGroup: "cluster.switchboard.io", APIVersion: "v1alpha1", Resource: "clusters", Subresource: "status", Name: "member1"}
	proxy := &request.RequestInfo{IsResourceRequest: true, Verb: "get", APIGroup: "cluster.switchboard.io", APIVersion: "v1alpha1", Resource: "clusters", Subresource: "proxy", Name: "member1"}
	discovery := &request.RequestInfo{IsResourceRequest: false, Path: "/apis/cluster.switchboard.io/v1alpha1"}
	other := &request.RequestInfo{IsResourceRequest: true, Verb: "get", APIGroup: "example.com", APIVersion: "v1", Resource: "clusters"}

	if code := serve(gated, getCluster).Code; code != http.StatusTeapot {
		t.Fatalf("healthy storage: %d, want the request to pass", code)
	}

	probe.set(errors.New("dial tcp 10.0.0.1:2379: connection refused"))
	waitFor(t, "the gate to close", func() bool { return health.Err() != nil })

	for name, info := range map[string]*request.RequestInfo{"get": getCluster, "status": updateStatus} {
		rec := serve(gated, info)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s while etcd is away: %d, want 503", name, rec.Code)
		}
		if rec.Header().Get("Retry-After") != "1" {
			t.Errorf("%s: Retry-After = %q", name, rec.Header().Get("Retry-After"))
		}
		var status metav1.Status
		if err := json.Unmarshal(rec.Body.Bytes(), &status); err != nil {
			t.Fatalf("%s: body is not a Status: %v: %s", name, err, rec.Body)
		}
		if status.Reason != metav1.StatusReasonServiceUnavailable || !strings.Contains(status.Message, "connection refused") ||
			status.Details == nil || status.Details.Name != "member1" {
			t.Errorf("%s: status = %+v", name, status)
		}
	}
	for name, info := range map[string]*request.RequestInfo{"proxy": proxy, "discovery": discovery, "other group": other, "no request info": nil} {
		if code := serve(gated, info).Code; code != http.StatusTeapot {
			t.Errorf("%s while etcd is away: %d, want it to pass (it does not use etcd)", name, code)
		}
	}

	probe.set(nil)
	waitFor(t, "the gate to open", func() bool { return health.Err() == nil })
	if code := serve(gated, getCluster).Code; code != http.StatusTeapot {
		t.Fatalf("recovered storage: %d, want the request to pass", code)
	}
}

func TestStorageReadyzCheck(t *testing.T) {
	probe := &switchableCheck{}
	check := NewStorageHealth(probe.check).ReadyzCheck()
	if check.Name() != "etcd" {
		t.Errorf("check name = %q", check.Name())
	}
	if err := check.Check(nil); err != nil {
		t.Errorf("healthy: %v", err)
	}
	probe.set(errors.New("down"))
	// The readyz check probes itself; it does not wait for the background loop.
	if err := check.Check(nil); err == nil {
		t.Error("unhealthy storage passed the readyz check")
	}
}
