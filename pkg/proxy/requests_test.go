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
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
)

var requestInfoFactory = &request.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

const clustersPath = "/apis/cluster.switchboard.io/v1alpha1/clusters"

// requestWithInfo is a hub request with its RequestInfo, as the filters see it.
func requestWithInfo(t *testing.T, method, target string, upgrade bool) (*http.Request, *request.RequestInfo) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if upgrade {
		markUpgrade(req)
	}
	info, err := requestInfoFactory.NewRequestInfo(req)
	if err != nil {
		t.Fatalf("NewRequestInfo(%s): %v", target, err)
	}
	return req, info
}

type longRunningCase struct {
	name    string
	method  string
	target  string
	upgrade bool
	want    bool
}

func runLongRunningCases(t *testing.T, cases []longRunningCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, info := requestWithInfo(t, method, tc.target, tc.upgrade)
			if got := IsLongRunning(req, info); got != tc.want {
				t.Errorf("IsLongRunning(%s %s, upgrade %v) = %v, want %v (info %+v)", method, tc.target, tc.upgrade, got, tc.want, info)
			}
		})
	}
}

func TestIsLongRunning(t *testing.T) {
	m1 := proxyPath(testCluster, "")
	runLongRunningCases(t, []longRunningCase{
		{name: "member watch by query", target: m1 + "/api/v1/pods?watch=true", want: true},
		{name: "member watch by query, 1", target: m1 + "/api/v1/namespaces/d/pods?watch=1", want: true},
		{name: "member watch=false", target: m1 + "/api/v1/pods?watch=false", want: false},
		{name: "logs followed", target: m1 + "/api/v1/namespaces/d/pods/p/log?follow=true", want: true},
		{name: "logs", target: m1 + "/api/v1/namespaces/d/pods/p/log", want: false},
		{name: "logs with follow=false", target: m1 + "/api/v1/namespaces/d/pods/p/log?follow=false", want: false},
		{name: "exec", target: m1 + "/api/v1/namespaces/d/pods/p/exec?command=ls", want: true},
		{name: "attach", target: m1 + "/api/v1/namespaces/d/pods/p/attach?stdin=true", want: true},
		{name: "portforward", target: m1 + "/api/v1/namespaces/d/pods/p/portforward", want: true},
		{name: "service proxy", target: m1 + "/api/v1/namespaces/d/services/web:80/proxy/metrics", want: true},
		{name: "node proxy", target: m1 + "/api/v1/nodes/n1/proxy/stats/summary", want: true},
		{name: "legacy watch path", target: m1 + "/api/v1/watch/pods", want: true},
		{name: "legacy namespaced watch path", target: m1 + "/api/v1/watch/namespaces/d/pods", want: true},
		{name: "group watch path", target: m1 + "/apis/apps/v1/watch/deployments", want: true},
		{name: "list pods", target: m1 + "/api/v1/pods", want: false},
		{name: "get a deployment", target: m1 + "/apis/apps/v1/namespaces/d/deployments/web", want: false},
		{name: "create a configmap", method: http.MethodPost, target: m1 + "/api/v1/namespaces/d/configmaps", want: false},
		{name: "discovery", target: m1 + "/apis", want: false},
		{name: "member root", target: m1, want: false},
		{name: "upgrade to a member path", target: m1 + "/api/v1/namespaces/d/pods/p", upgrade: true, want: true},
		{name: "watch of clusters", target: clustersPath + "?watch=true", want: true},
		{name: "watch of clusters by path", target: "/apis/cluster.switchboard.io/v1alpha1/watch/clusters", want: true},
		{name: "list clusters", target: clustersPath, want: false},
		{name: "get a cluster", target: clustersPath + "/m1", want: false},
		{name: "cluster status", target: clustersPath + "/m1/status", want: false},
		{name: "upgrade to a cluster, not its proxy", target: clustersPath + "/m1", upgrade: true, want: false},
		{name: "another group's proxy subresource", target: "/apis/other.example.com/v1/clusters/m1/proxy/api/v1/pods/p/exec", want: false},
		{name: "non-resource path", target: "/healthz?watch=true", want: false},
		{name: "CPU profile, as the generic server counts it", target: "/debug/pprof/profile?seconds=90", want: true},
	})

	if IsLongRunning(httptest.NewRequest(http.MethodGet, "/", nil), nil) {
		t.Error("IsLongRunning(nil info) = true")
	}
}

// Only the subresource position of the member path says exec, attach,
// portforward or proxy: a namespace, a resource name or a path below a
// nested proxy that happens to be one of these words does not make a request
// stream. Misclassified requests escape the request timeout and the
// max-in-flight limit.
func TestIsLongRunningLooksAtTheSubresourceOnly(t *testing.T) {
	m1 := proxyPath(testCluster, "")
	runLongRunningCases(t, []longRunningCase{
		{name: "pods of a namespace named exec", target: m1 + "/api/v1/namespaces/exec/pods", want: false},
		{name: "a pod named proxy", target: m1 + "/api/v1/namespaces/d/pods/proxy", want: false},
		{name: "deployments of a namespace named attach", target: m1 + "/apis/apps/v1/namespaces/attach/deployments", want: false},
		{name: "a configmap named portforward", target: m1 + "/api/v1/namespaces/d/configmaps/portforward", want: false},
		{name: "a namespace named proxy", target: m1 + "/api/v1/namespaces/proxy", want: false},
	})
}

// The member reads watch and follow as kube-apiserver reads every boolean
// query parameter: anything but "0" or "false" (any case) is true, including
// an empty value. A request the member streams must be long-running here too,
// or the hub's request timeout cuts it.
func TestIsLongRunningReadsBooleansAsTheMemberDoes(t *testing.T) {
	m1 := proxyPath(testCluster, "")
	runLongRunningCases(t, []longRunningCase{
		{name: "watch=True", target: m1 + "/api/v1/pods?watch=True", want: true},
		{name: "watch without a value", target: m1 + "/api/v1/pods?watch", want: true},
		{name: "follow=TRUE", target: m1 + "/api/v1/namespaces/d/pods/p/log?follow=TRUE", want: true},
		{name: "watch=FALSE", target: m1 + "/api/v1/pods?watch=FALSE", want: false},
	})
}

func TestWithProxyQuery(t *testing.T) {
	cases := []struct {
		name   string
		method string
		target string
		// innerQuery is what the handler behind the filter must see.
		innerQuery url.Values
		// sameURL says the filter must leave the request URL as it is.
		sameURL bool
	}{
		{
			name:       "dryRun on a proxy request",
			method:     http.MethodPatch,
			target:     proxyPath(testCluster, "/api/v1/namespaces/d/configmaps/c") + "?dryRun=All&fieldManager=x",
			innerQuery: url.Values{"fieldManager": {"x"}},
		},
		{
			name:       "dryRun twice and an encoded value",
			method:     http.MethodPost,
			target:     proxyPath(testCluster, "/api/v1/namespaces/d/configmaps") + "?fieldManager=a%2Fb&dryRun=All&dryRun=All",
			innerQuery: url.Values{"fieldManager": {"a/b"}},
		},
		{
			name:    "proxy request without dryRun",
			method:  http.MethodGet,
			target:  proxyPath(testCluster, "/api/v1/pods") + "?b=2&a=1&labelSelector=x%3Dy",
			sameURL: true,
		},
		{
			name:    "dryRun on a cluster, not its proxy",
			method:  http.MethodPatch,
			target:  clustersPath + "/m1?dryRun=All",
			sameURL: true,
		},
		{
			name:    "dryRun on clusters",
			method:  http.MethodPost,
			target:  clustersPath + "?dryRun=All",
			sameURL: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMember(t, nil)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			req, info := requestWithInfo(t, tc.method, tc.target, false)
			req = req.WithContext(request.WithRequestInfo(request.WithUser(req.Context(), alice), info))
			originalURL := req.URL.String()
			originalQuery := req.URL.RawQuery

			var inner *http.Request
			rec := httptest.NewRecorder()
			WithProxyQuery(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				inner = r
				if !isProxyRequest(info) {
					return
				}
				handler, err := f.connect(r.Context(), testCluster, strings.TrimPrefix(r.URL.Path, proxyPath(testCluster, "")), &recordingResponder{w: w})
				if err != nil {
					t.Errorf("Connect: %v", err)
					return
				}
				handler.ServeHTTP(w, r)
			})).ServeHTTP(rec, req)

			if inner == nil {
				t.Fatal("the filter did not call the handler")
			}
			if tc.sameURL {
				if got := inner.URL.String(); got != originalURL {
					t.Errorf("the handler saw %s, want the untouched %s", got, originalURL)
				}
			} else {
				got := inner.URL.Query()
				if _, ok := got["dryRun"]; ok || got.Encode() != tc.innerQuery.Encode() {
					t.Errorf("the handler saw the query %v, want %v", got, tc.innerQuery)
				}
				if inner.URL.Path != req.URL.Path {
					t.Errorf("the handler saw the path %q, want %q", inner.URL.Path, req.URL.Path)
				}
			}
			if req.URL.String() != originalURL {
				t.Errorf("the filter changed the caller's request URL to %s", req.URL)
			}
			if !isProxyRequest(info) {
				if n := len(mem.requests()); n != 0 {
					t.Errorf("the member received %d requests", n)
				}
				return
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("answer = %d %q", rec.Code, rec.Body.String())
			}
			if got := mem.only(t).RawQuery; got != originalQuery {
				t.Errorf("the member got the query %q, want the caller's %q", got, originalQuery)
			}
		})
	}
}

// Within WithMemberRequestMemo, the member path of a request is parsed once
// however often the filters ask, and again only for another hub request info.
func TestMemberRequestMemo(t *testing.T) {
	var seen []*request.RequestInfo
	handler := WithMemberRequestMemo(http.HandlerFunc(func(_ http.ResponseWriter, req *http.Request) {
		info, err := requestInfoFactory.NewRequestInfo(req)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if !IsLongRunning(req, info) {
				t.Error("a member watch is not long-running")
			}
			seen = append(seen, memberRequest(req, info))
		}
		other := *info
		seen = append(seen, memberRequest(req, &other))
	}))
	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/apis/cluster.switchboard.io/v1alpha1/clusters/m1/proxy/api/v1/pods?watch=1", nil))

	if len(seen) != 4 || seen[0] == nil || seen[0].Verb != "watch" {
		t.Fatalf("member request infos = %+v", seen)
	}
	if seen[1] != seen[0] || seen[2] != seen[0] {
		t.Error("the member path was parsed again within one request")
	}
	if seen[3] == seen[0] {
		t.Error("another hub request info got the member info parsed for the first")
	}
}

// BenchmarkIsLongRunning is what the generic filters pay per check of a
// proxied request, parsed anew or from the request's memo.
func BenchmarkIsLongRunning(b *testing.B) {
	target := "/apis/cluster.switchboard.io/v1alpha1/clusters/m1/proxy/api/v1/namespaces/default/pods?watch=true"
	for _, memo := range []bool{false, true} {
		b.Run(fmt.Sprintf("memo=%v", memo), func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			if memo {
				req = req.WithContext(context.WithValue(req.Context(), memberMemoKey{}, &memberMemo{}))
			}
			info, err := requestInfoFactory.NewRequestInfo(req)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				IsLongRunning(req, info)
			}
		})
	}
}
