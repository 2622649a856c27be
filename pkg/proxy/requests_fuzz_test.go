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

	"k8s.io/apimachinery/pkg/runtime"
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
// request that reaches it: the request info of the path the generic
// server's Connect handler hands the proxy (rebuilt here as
// k8s.io/apiserver's getRequestOptions builds it, from the hub request's
// parts) is the one switchboard parses; and it holds open exactly what
// kube-apiserver's LongRunningFunc holds open, but for logs, which it holds
// open only when followed (read as kube-apiserver reads PodLogOptions'
// booleans). Both sides use k8s.io/apiserver's RequestInfoFactory, as
// kube-apiserver does: what this checks is the path switchboard parses and
// the decision it makes from the parse.
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
		{0, "/api/v1/watch", ""},
		{0, "/apis/apps/v1/proxy/", ""},
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
		got := memberRequest(hubReq, hubInfo)
		if err != nil {
			// kube-apiserver cannot read it (a watch or proxy verb with
			// nothing after it): it answers at once, with an error.
			if got != nil || IsLongRunning(hubReq, hubInfo) {
				t.Fatalf("kube-apiserver cannot read %q (%v); switchboard reads it as %+v, long-running %v", memberReq.URL, err, got, IsLongRunning(hubReq, hubInfo))
			}
			return
		}
		if got == nil {
			t.Fatalf("switchboard cannot read the member request %q that kube-apiserver reads as %+v", memberReq.URL, kube)
		}
		if !reflect.DeepEqual(got, kube) {
			t.Fatalf("member request %q:\nswitchboard reads %+v\nkube-apiserver    %+v", memberReq.URL, got, kube)
		}

		want := kubeAPIServerLongRunning(memberReq, kube)
		if kube.IsResourceRequest && kube.Subresource == "log" {
			// As kube-apiserver decodes PodLogOptions.Follow.
			values, follow := memberReq.URL.Query()["follow"], false
			_ = runtime.Convert_Slice_string_To_bool(&values, &follow, nil)
			want = follow
		}
		if hubLongRunning(hubReq, hubInfo) {
			want = true
		}
		if long := IsLongRunning(hubReq, hubInfo); long != want {
			t.Fatalf("%s %q: long-running %v, want %v (member request %+v)", method, memberReq.URL, long, want, kube)
		}
	})
}
