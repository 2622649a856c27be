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
	"net/http"
	"net/url"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// isProxyRequest says whether a request is for clusters/<name>/proxy.
func isProxyRequest(info *request.RequestInfo) bool {
	return info != nil && info.IsResourceRequest && info.APIGroup == cluster.GroupName &&
		info.Resource == "clusters" && info.Subresource == "proxy"
}

// innerPath is the member path of a proxy request, split into segments:
// Parts are clusters, <name>, proxy, then the member path.
func innerPath(info *request.RequestInfo) []string {
	if len(info.Parts) <= 3 {
		return nil
	}
	return info.Parts[3:]
}

// memberLongRunning is kube-apiserver's own LongRunningFunc (its control
// plane's config): the requests a member holds open, watches, exec,
// attach, port-forward, nested proxies, logs and /debug/pprof/, are the
// ones switchboard holds open for it.
var memberLongRunning = genericfilters.BasicLongRunningRequestCheck(
	sets.NewString("watch", "proxy"), sets.NewString("attach", "exec", "proxy", "log", "portforward"))

// hubLongRunning is the generic server's default check.
var hubLongRunning = genericfilters.BasicLongRunningRequestCheck(sets.NewString("watch"), sets.NewString())

// IsLongRunning says whether a request may stay open indefinitely: what the
// generic server counts (watches of Clusters, /debug/pprof/), and proxied
// requests that the member holds open (watches, exec, attach,
// port-forward, nested proxies, its /debug/pprof/), and logs, when
// followed. Long-running requests are not cut by the request timeout and
// do not count against max-in-flight. Other proxied requests, however
// large their answer, are ordinary requests.
//
// The member path is read as the member reads it: its own request info
// (watch verbs, subresources) and its boolean parameters, where anything but
// "0" or "false" is true. FuzzMemberRequest checks both against
// kube-apiserver's.
func IsLongRunning(r *http.Request, info *request.RequestInfo) bool {
	if info == nil {
		return false
	}
	// The generic server's own: watches, and /debug/pprof/.
	if hubLongRunning(r, info) {
		return true
	}
	if !isProxyRequest(info) {
		return false
	}
	if httpstream.IsUpgradeRequest(r) {
		return true
	}
	member := memberRequest(r, info)
	if member == nil {
		return false
	}
	if member.IsResourceRequest && member.Subresource == "log" {
		// The one difference from kube-apiserver: a log that is not
		// followed ends once it is read, however large, so it is an
		// ordinary request here.
		return queryTrue(r.URL.Query(), "follow")
	}
	return memberLongRunning(r, member)
}

// memberRequest is the request info of a proxy request's member path, as
// the member reads it; nil when it cannot be read. Parsing it
// takes microseconds and a few dozen allocations, and the generic filters
// ask about one request several times (max-in-flight or priority and
// fairness, audit, timeout, wait group, ...), so within a request that
// WithMemberRequestMemo marked it is parsed once.
func memberRequest(r *http.Request, info *request.RequestInfo) *request.RequestInfo {
	memo, ok := r.Context().Value(memberMemoKey{}).(*memberMemo)
	if !ok {
		return parseMemberRequest(r, info)
	}
	memo.mu.Lock()
	defer memo.mu.Unlock()
	if memo.info != info {
		memo.info, memo.member = info, parseMemberRequest(r, info)
	}
	return memo.member
}

func parseMemberRequest(r *http.Request, info *request.RequestInfo) *request.RequestInfo {
	// The path as the generic server's Connect handler passes it on
	// (k8s.io/apiserver's getRequestOptions), joined as the proxy joins it.
	path := strings.Join(innerPath(info), "/")
	if strings.HasSuffix(info.Path, "/") && !strings.HasSuffix(path, "/") {
		path += "/"
	}
	inner := &http.Request{
		Method: r.Method,
		URL:    &url.URL{Path: reach.JoinPath("", path), RawQuery: r.URL.RawQuery},
	}
	member, err := reach.MemberRequestInfo.NewRequestInfo(inner)
	if err != nil {
		return nil
	}
	return member
}

type memberMemoKey struct{}

// memberMemo holds the member request info of one request, for the hub
// request info it was parsed from (every filter sees the same one).
type memberMemo struct {
	mu     sync.Mutex
	info   *request.RequestInfo
	member *request.RequestInfo
}

// WithMemberRequestMemo lets the filters inside it share one parse of a
// proxy request's member path. It must wrap the whole handler chain.
func WithMemberRequestMemo(handler http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		handler.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), memberMemoKey{}, &memberMemo{})))
	})
}

// isMemberWatch says whether a proxy request is a watch in the member.
func isMemberWatch(r *http.Request) bool {
	info, ok := request.RequestInfoFrom(r.Context())
	if !ok || !isProxyRequest(info) || httpstream.IsUpgradeRequest(r) {
		return false
	}
	member := memberRequest(r, info)
	return member != nil && member.IsResourceRequest && member.Verb == "watch"
}

// mayAnswerLate says whether the member may rightly take longer than
// --request-timeout to begin its answer: a request it holds open and
// answers only when it has something, logs -f, nested proxies and
// /debug/pprof/. It answers a watch at once, and exec, attach and
// port-forward too (a 101, or a refusal when no upgrade was asked for);
// an upgrade is bounded as it is dialed.
func mayAnswerLate(r *http.Request) bool {
	info, ok := request.RequestInfoFrom(r.Context())
	if !ok || !isProxyRequest(info) || httpstream.IsUpgradeRequest(r) || !IsLongRunning(r, info) {
		return false
	}
	member := memberRequest(r, info)
	if member == nil {
		return false
	}
	if member.IsResourceRequest {
		return member.Verb != "watch" && !answeredAtOnce.Has(member.Subresource)
	}
	return true
}

// answeredAtOnce are the subresources a member holds open whose answer
// begins at once.
var answeredAtOnce = sets.NewString("exec", "attach", "portforward")

// queryTrue reads a boolean query parameter as kube-apiserver does.
func queryTrue(q url.Values, name string) bool {
	v, ok := q[name]
	return ok && len(v) > 0 && v[0] != "0" && !strings.EqualFold(v[0], "false")
}

type originalQueryKey struct{}

// WithProxyQuery lets query parameters that the generic Connect handler
// would refuse reach the member unchanged. The generic handler rejects any
// dryRun parameter on connect requests, but kubectl apply --dry-run=server
// through a member kubeconfig sends exactly that, for the member to honour.
// For proxy requests, this filter keeps the original query in the context
// and hides dryRun from the generic handler; the proxy forwards the
// original. It must run after the request info is known.
func WithProxyQuery(handler http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, _ := request.RequestInfoFrom(req.Context())
		if !isProxyRequest(info) || req.URL.RawQuery == "" {
			handler.ServeHTTP(w, req)
			return
		}
		query := req.URL.Query()
		if _, ok := query["dryRun"]; !ok {
			handler.ServeHTTP(w, req)
			return
		}
		original := req.URL.RawQuery
		query.Del("dryRun")
		req = req.WithContext(context.WithValue(req.Context(), originalQueryKey{}, original))
		u := *req.URL
		u.RawQuery = query.Encode()
		req.URL = &u
		handler.ServeHTTP(w, req)
	})
}

// originalQuery is the query of a proxy request as the caller sent it.
func originalQuery(req *http.Request) string {
	if original, ok := req.Context().Value(originalQueryKey{}).(string); ok {
		return original
	}
	return req.URL.RawQuery
}
