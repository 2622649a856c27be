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
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
	genericfilters "k8s.io/apiserver/pkg/server/filters"

	"github.com/switchboard-io/switchboard/pkg/reach"
)

// kubeAPIServerLongRunning is kube-apiserver's LongRunningFunc, as its
// control plane config sets it (pkg/controlplane/apiserver/config.go in
// k8s.io/kubernetes, which switchboard does not import).
var kubeAPIServerLongRunning = genericfilters.BasicLongRunningRequestCheck(
	sets.NewString("watch", "proxy"), sets.NewString("attach", "exec", "proxy", "log", "portforward"))

// proxiedMethods are the methods the proxy subresource serves.
var proxiedMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// FuzzMemberRequest: for any member path and query, switchboard reads a
// proxy request (clusters/m1/proxy/<path>) as the member will read the
// request that reaches it: the same request info, parsed from the hub
// request's parts, as the path the generic server's Connect handler hands
// the proxy (k8s.io/apiserver's getRequestOptions); and it holds open
// exactly what kube-apiserver holds open, but for logs, which it holds
// open only when followed.
func FuzzMemberRequest(f *testing.F) {
	for _, seed := range []struct {
		method      uint8
		path, query string
	}{
		{0, "/api/v1/namespaces/ns/pods", "watch=1"},
		{0, "/api/v1/namespaces/ns/pods/web/log", "follow=true&container=c"},
		{0, "/api/v1/namespaces/ns/pods/web/log", "follow=0"},
		{2, "/api/v1/namespaces/ns/pods/web/exec", "command=sh&stdin=true"},
		{2, "/api/v1/namespaces/ns/pods/web/portforward", ""},
		{0, "/api/v1/namespaces/ns/services/https:web:443/proxy/healthz", ""},
		{0, "/api/v1/proxy/namespaces/ns/pods/web", ""},
		{0, "/apis/apps/v1/watch/namespaces/ns/deployments/web", ""},
		{0, "/apis/apps/v1/namespaces/ns/deployments/", "watch=false"},
		{0, "//api//v1/pods/", "watch=1&watch=0"},
		{0, "/api/v1/namespaces/a%2Fb/pods", ""},
		{0, "/debug/pprof/profile", "seconds=30"},
		{0, "/apis/metrics.k8s.io/v1beta1/nodes", "fieldSelector=metadata.name%3Dn1"},
		{5, "/api/v1/namespaces/ns/pods", "labelSelector=a"},
		{0, "", ""},
		{0, "/", ""},
	} {
		f.Add(seed.method, seed.path, seed.query)
	}
	f.Fuzz(func(t *testing.T, methodIndex uint8, memberPath, rawQuery string) {
		method := proxiedMethods[int(methodIndex)%len(proxiedMethods)]
		hubReq := &http.Request{Method: method, Header: http.Header{},
			URL: &url.URL{Path: "/apis/cluster.switchboard.io/v1alpha1/clusters/m1/proxy" + memberPath, RawQuery: rawQuery}}
		hubInfo, err := requestInfoFactory.NewRequestInfo(hubReq)
		if err != nil || !isProxyRequest(hubInfo) || hubInfo.Name != "m1" {
			return
		}

		// The member path the generic server hands Connect.
		sub := strings.Join(hubInfo.Parts[3:], "/")
		if sub != "" && !strings.HasPrefix(sub, "/") {
			sub = "/" + sub
		}
		if strings.HasSuffix(hubInfo.Path, "/") && !strings.HasSuffix(sub, "/") {
			sub += "/"
		}
		if CheckPath(sub) != nil {
			return // refused, never sent
		}
		memberReq := &http.Request{Method: method, Header: http.Header{},
			URL: &url.URL{Path: reach.JoinPath("", sub), RawQuery: rawQuery}}
		kube, err := (&request.RequestInfoFactory{
			APIPrefixes:          sets.NewString("api", "apis"),
			GrouplessAPIPrefixes: sets.NewString("api"),
		}).NewRequestInfo(memberReq)
		if err != nil {
			t.Fatalf("kube-apiserver cannot read %q: %v", memberReq.URL, err)
		}

		got := memberRequest(hubReq, hubInfo)
		if got == nil {
			t.Fatalf("switchboard cannot read the member request %q that kube-apiserver reads as %+v", memberReq.URL, kube)
		}
		if !reflect.DeepEqual(got, kube) {
			t.Fatalf("member request %q:\nswitchboard reads %+v\nkube-apiserver    %+v", memberReq.URL, got, kube)
		}

		want := kubeAPIServerLongRunning(memberReq, kube)
		if kube.IsResourceRequest && kube.Subresource == "log" {
			want = queryTrue(memberReq.URL.Query(), "follow")
		}
		if hubLongRunning(hubReq, hubInfo) {
			want = true
		}
		if long := IsLongRunning(hubReq, hubInfo); long != want {
			t.Fatalf("%s %q: long-running %v, want %v (member request %+v)", method, memberReq.URL, long, want, kube)
		}
	})
}
