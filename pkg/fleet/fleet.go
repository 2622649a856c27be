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

// Package fleet serves fleets/<selector>/proxy/<path>: get, list and watch
// of a Kubernetes resource in every member the caller may reach, at once,
// as the caller, with the answers merged.
//
// The hub lets the caller in on fleets/proxy (switchboard's manifests grant
// that to every authenticated user, since it gives nothing by itself). Then
// each member counts only if the hub would let the caller use
// clusters/proxy on its name: a SubjectAccessReview per member, cached as
// every other. Each member applies its own RBAC to the impersonated caller,
// as for clusters/<name>/proxy, and a member that refuses or fails is named
// in a Warning header while the others' answers come back. Nothing is served
// from a cache.
package fleet

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/proxy"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// Resource and Subresource make the fleet's path:
// /apis/cluster.switchboard.io/v1alpha1/fleets/<selector>/proxy/<path>.
const (
	Resource    = "fleets"
	Subresource = "proxy"
)

// groupVersion is the version the fleet's own errors are written in.
var groupVersion = schema.GroupVersion{Group: cluster.GroupName, Version: "v1alpha1"}

// Reacher is what the fleet asks of the proxy.
type Reacher interface {
	// Reach returns the pooled connection to a member, or the typed
	// error that says why it cannot be reached now.
	Reach(name string) (*reach.Member, error)
	// Reachable says, without Reach's side effects, whether Reach would
	// return a connection to the member now.
	Reachable(name string) bool
	// Connect proxies one request to a member, as clusters/<name>/proxy.
	Connect(ctx context.Context, name, path string, responder rest.Responder) (http.Handler, error)
}

// Config configures a Fleet.
type Config struct {
	// Clusters lists the Clusters.
	Clusters listers.ClusterLister
	// Members reaches them.
	Members Reacher
	// Authorizer decides whether the caller may use clusters/proxy on
	// each member, as the hub would.
	Authorizer authorizer.Authorizer
	// Serializer writes the fleet's own errors.
	Serializer runtime.NegotiatedSerializer
	// MembersInFlight bounds how many members one request asks at once.
	MembersInFlight int
	// MemberTimeout bounds each member's answer to a get or list.
	MemberTimeout time.Duration
	// Recheck is how often a watch looks for members it does not watch,
	// down when it started, that answer again; new members in the fleet
	// are looked for every sixth time.
	Recheck time.Duration
	// EndWatches, when set, is done when the server takes no new
	// requests; fleet watches then end, as proxied ones do.
	EndWatches context.Context
}

// Fleet serves the fleet endpoint.
type Fleet struct {
	clusters        listers.ClusterLister
	members         Reacher
	authorizer      authorizer.Authorizer
	serializer      runtime.NegotiatedSerializer
	membersInFlight int
	memberTimeout   time.Duration
	recheck         time.Duration
	endWatches      context.Context
}

// New returns a Fleet.
func New(cfg Config) *Fleet {
	f := &Fleet{clusters: cfg.Clusters, members: cfg.Members, authorizer: cfg.Authorizer, serializer: cfg.Serializer,
		membersInFlight: cfg.MembersInFlight, memberTimeout: cfg.MemberTimeout, recheck: cfg.Recheck, endWatches: cfg.EndWatches}
	if f.membersInFlight <= 0 {
		f.membersInFlight = 1
	}
	if f.recheck <= 0 {
		f.recheck = 10 * time.Second
	}
	if f.endWatches == nil {
		f.endWatches = context.Background()
	}
	return f
}

// IsFleetRequest says whether a request is for fleets/<selector>/proxy.
func IsFleetRequest(info *request.RequestInfo) bool {
	return info != nil && info.IsResourceRequest && info.APIGroup == cluster.GroupName &&
		info.APIVersion == groupVersion.Version && info.Resource == Resource && info.Subresource == Subresource &&
		info.Namespace == ""
}

// MemberPath is the member path of a fleet request, as the member reads it.
func MemberPath(info *request.RequestInfo) string {
	if len(info.Parts) <= 3 {
		return "/"
	}
	return "/" + strings.Join(info.Parts[3:], "/")
}

func (f *Fleet) serve(w http.ResponseWriter, req *http.Request, info *request.RequestInfo) {
	verb, outcome, err := f.serveRequest(w, req, info)
	if err != nil {
		outcome = outcomeError
		responsewriters.ErrorNegotiated(err, f.serializer, groupVersion, w, req)
	}
	recordRequest(verb, outcome)
}

// serveRequest serves one fleet request. An error is the answer, unless
// the answer has begun.
func (f *Fleet) serveRequest(w http.ResponseWriter, req *http.Request, info *request.RequestInfo) (verb, outcome string, err error) {
	path := MemberPath(info)
	if httpstream.IsUpgradeRequest(req) {
		return "refused", "", writeRefused("exec, attach and port-forward", path)
	}
	if req.Method != http.MethodGet && (req.Method != http.MethodHead || IsLongRunning(req, info)) {
		return "refused", "", writeRefused(req.Method+" requests", path)
	}
	if err := proxy.CheckPath(path); err != nil {
		return "refused", "", err
	}
	selector, err := ParseSelector(info.Name)
	if err != nil {
		return "refused", "", err
	}
	caller, ok := request.UserFrom(req.Context())
	if !ok || caller == nil || caller.GetName() == "" {
		return "refused", "", apierrors.NewInternalError(fmt.Errorf("the fleet request carries no authenticated user"))
	}
	members, err := f.allowed(req.Context(), caller, selector)
	if err != nil {
		return "refused", "", err
	}

	memberInfo, err := reach.MemberRequestInfo.NewRequestInfo(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: req.URL.RawQuery}})
	if err != nil || !memberInfo.IsResourceRequest {
		return "discovery", outcomeOK, f.serveDiscovery(w, req, info.Name, path, members)
	}
	if memberInfo.Subresource != "" {
		return "refused", "", apierrors.NewBadRequest(fmt.Sprintf(
			"the fleet endpoint reads resources (get, list, watch), not subresources such as %s/%s; ask one member: /apis/%s/%s/clusters/<name>/proxy%s",
			memberInfo.Resource, memberInfo.Subresource, cluster.GroupName, groupVersion.Version, path))
	}
	media, err := memberMedia(req.Header.Get("Accept"))
	if err != nil {
		return "refused", "", err
	}
	read := &read{fleet: f, req: req, fleetName: info.Name, path: path, query: req.URL.Query(), media: media, members: members}
	if len(members) == 0 {
		warning.AddWarning(req.Context(), "", fmt.Sprintf("fleet %q holds no Cluster that you may reach through clusters/proxy", info.Name))
	}
	switch memberInfo.Verb {
	case "get":
		outcome, err = read.get(w, memberInfo)
	case "list":
		outcome, err = read.list(w)
	case "watch":
		outcome, err = read.watch(w)
	default:
		return "refused", "", writeRefused(memberInfo.Verb, path)
	}
	return memberInfo.Verb, outcome, err
}

// writeRefused is the 405 for what the fleet endpoint does not do.
func writeRefused(what, path string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure,
		Code:   http.StatusMethodNotAllowed,
		Reason: metav1.StatusReasonMethodNotAllowed,
		Message: fmt.Sprintf("the fleet endpoint only reads (get, list and watch of resources); %s go to one member: /apis/%s/%s/clusters/<name>/proxy%s",
			what, cluster.GroupName, groupVersion.Version, path),
	}}
}

// allowed are the names of the Clusters that selector picks and that the
// caller may use clusters/proxy on, in name order. Clusters the caller may
// not reach are left out without a word, so their names are not told.
func (f *Fleet) allowed(ctx context.Context, caller user.Info, selector labels.Selector) ([]string, error) {
	clusters, err := f.clusters.List(selector)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing Clusters from the cache: %w", err))
	}
	names := make([]string, len(clusters))
	for i, cl := range clusters {
		names[i] = cl.Name
	}
	sort.Strings(names)
	allowed := make([]bool, len(names))
	var failed error
	var mu sync.Mutex
	f.each(len(names), func(i int) {
		decision, _, err := f.authorizer.Authorize(ctx, authorizer.AttributesRecord{
			User: caller, Verb: "get", APIGroup: cluster.GroupName, APIVersion: groupVersion.Version,
			Resource: "clusters", Subresource: "proxy", Name: names[i], ResourceRequest: true,
		})
		if err != nil && decision != authorizer.DecisionAllow {
			mu.Lock()
			failed = err
			mu.Unlock()
		}
		allowed[i] = decision == authorizer.DecisionAllow
	})
	if failed != nil {
		klog.FromContext(ctx).Error(failed, "Authorizing a fleet request per member failed")
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("switchboard could not ask the hub which members you may reach: %v", failed))
	}
	out := names[:0]
	for i, name := range names {
		if allowed[i] {
			out = append(out, name)
		}
	}
	return out, nil
}

// each runs do(0) ... do(n-1), at most membersInFlight at once, and waits.
func (f *Fleet) each(n int, do func(i int)) {
	limit := make(chan struct{}, f.membersInFlight)
	var wg sync.WaitGroup
	for i := range n {
		limit <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-limit; wg.Done() }()
			do(i)
		}()
	}
	wg.Wait()
}

// serveDiscovery answers a path that is no resource request (/api, /apis,
// /version, /openapi/v3, ...) from the first member, in name order, that
// can be reached: kubectl needs discovery before it lists, and a fleet has
// no discovery of its own. The members of a fleet are expected to serve
// the resources asked of it.
func (f *Fleet) serveDiscovery(w http.ResponseWriter, req *http.Request, fleetName, path string, members []string) error {
	var last error
	for _, name := range members {
		if _, err := f.members.Reach(name); err != nil {
			last = err
			continue
		}
		handler, err := f.members.Connect(req.Context(), name, path, &responder{serializer: f.serializer, w: w, req: req})
		if err != nil {
			last = err
			continue
		}
		handler.ServeHTTP(w, req)
		return nil
	}
	message := fmt.Sprintf("fleet %q holds no Cluster that you may reach through clusters/proxy, so it cannot answer %s", fleetName, path)
	if last != nil {
		message = fmt.Sprintf("fleet %q: no member could answer %s; the last one tried: %s", fleetName, path, messageOf(last))
	}
	// Discovery is read without decoding a Status (see reach.NeedsWarning).
	warning.AddWarning(req.Context(), "", reach.WarningText(message))
	return apierrors.NewServiceUnavailable(message)
}

// responder writes what a member connection reports, for discovery.
type responder struct {
	serializer runtime.NegotiatedSerializer
	w          http.ResponseWriter
	req        *http.Request
}

func (r *responder) Object(code int, obj runtime.Object) {
	responsewriters.WriteObjectNegotiated(r.serializer, negotiation.DefaultEndpointRestrictions, groupVersion, r.w, r.req, code, obj, false)
}

func (r *responder) Error(err error) {
	// The proxy has added the warning that discovery needs.
	responsewriters.ErrorNegotiated(err, r.serializer, groupVersion, r.w, r.req)
}

// media is the form in which the fleet asks members, and answers.
type media struct {
	// accept is sent to members.
	accept string
	// table: the caller asked for a Table (kubectl get).
	table bool
}

// memberMedia picks what to ask members for from the caller's Accept: the
// first JSON media range, with its parameters (as=Table;v=v1;g=meta.k8s.io,
// as=PartialObjectMetadataList, ...). The fleet answers in JSON only, which
// every Kubernetes client reads.
func memberMedia(accept string) (media, error) {
	if strings.TrimSpace(accept) == "" {
		return media{accept: "application/json"}, nil
	}
	for _, part := range strings.Split(accept, ",") {
		mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mediaType != "application/json" && mediaType != "*/*" && mediaType != "application/*" {
			continue
		}
		if mediaType != "application/json" || len(params) == 0 {
			return media{accept: "application/json"}, nil
		}
		delete(params, "q")
		return media{accept: mime.FormatMediaType("application/json", params), table: params["as"] == "Table"}, nil
	}
	return media{}, negotiation.NewNotAcceptableError([]string{"application/json"})
}

// messageOf is the message of a Status error, or the error's text.
func messageOf(err error) string {
	if status, ok := err.(apierrors.APIStatus); ok {
		return status.Status().Message
	}
	return err.Error()
}

// tooLarge is a member answer larger than the fleet reads.
type tooLarge struct{ limit int64 }

func (e *tooLarge) Error() string {
	return fmt.Sprintf("the answer is larger than %d MiB; list with a limit (kubectl --chunk-size, client-go's pager)", e.limit>>20)
}

// readBody reads a member's answer, up to limit bytes.
func readBody(body io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, &tooLarge{limit: limit}
	}
	return data, nil
}

// ServeIfFleet serves req if it is a fleet request, and says whether it was.
func (f *Fleet) ServeIfFleet(w http.ResponseWriter, req *http.Request) bool {
	info, _ := request.RequestInfoFrom(req.Context())
	if !IsFleetRequest(info) {
		return false
	}
	f.serve(w, req, info)
	return true
}

// IsLongRunning says whether a fleet request stays open: a watch. Fleet
// gets and lists are ordinary requests, under the request timeout and
// max-in-flight; upgrades are refused at once.
func IsLongRunning(r *http.Request, info *request.RequestInfo) bool {
	if !IsFleetRequest(info) || httpstream.IsUpgradeRequest(r) {
		return false
	}
	member, err := reach.MemberRequestInfo.NewRequestInfo(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: MemberPath(info), RawQuery: r.URL.RawQuery}})
	return err == nil && member.IsResourceRequest && member.Verb == "watch"
}
