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

package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/proxy"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// maxAnswerBytes bounds one member's answer to a get or list. A list
// larger than this must be paged (kubectl --chunk-size, client-go's pager).
const maxAnswerBytes = 256 << 20

// maxWarnings is how many failed members a fleet answer names one by one.
const maxWarnings = 10

// read is one fleet read: a get, list or watch of a member path.
type read struct {
	fleet     *Fleet
	req       *http.Request
	fleetName string
	path      string
	query     url.Values
	media     media
	// members are the Clusters the caller may reach, in name order.
	members []string
	// ask sends one request to a member, and open starts one member's
	// watch; nil is askMember and openWatch. Tests replace them.
	ask  func(ctx context.Context, name string, query url.Values) answer
	open func(ctx context.Context, name string, query url.Values) (*memberStream, error)
	// reach is the connection to a member; nil is the fleet's Reacher.
	// Tests replace it.
	reach func(name string) (memberConn, error)

	mu       sync.Mutex
	failures []failure
}

// failure is a member that failed in a read, and why.
type failure struct {
	cluster string
	err     error
}

// answer is one member's answer to a get or list.
type answer struct {
	body        []byte
	contentType string
	// err is a Status error: the member's own (403, 404, 410, ...), or
	// switchboard's when the member gave no answer.
	err error
}

func (r *read) askOne(ctx context.Context, name string, query url.Values) answer {
	if r.ask != nil {
		return r.ask(ctx, name, query)
	}
	return r.askMember(ctx, name, query)
}

// askMember sends a GET of the read's path to a member, as the caller,
// within the member deadline, and reads the whole answer.
func (r *read) askMember(ctx context.Context, name string, query url.Values) answer {
	stream := r.openMember(ctx, name, query)
	if stream.err != nil {
		return answer{err: stream.err}
	}
	defer stream.close()
	body, err := readBody(stream.body, maxAnswerBytes)
	if err != nil {
		return answer{err: stream.readFailed(err)}
	}
	return answer{body: body, contentType: stream.contentType}
}

// memberBody is a member's answer of 200 whose body is still to be read;
// or, with err, why there is none.
type memberBody struct {
	body        io.Reader
	contentType string
	err         error
	// readFailed is the Status for an error while reading body.
	readFailed func(error) error
	// stopDeadline lets the rest of the body take as long as the request
	// may: a watch's, for as long as it runs. False: the deadline had
	// passed.
	stopDeadline func() bool
	// paceDeadline lets the rest of the body go at the pace of the client
	// that reads it, as a streamed list does, while each read of it still
	// waits at most the member timeout for the member: a member that
	// stalls in the middle of its answer is cut off, not waited for. False:
	// the deadline had passed.
	paceDeadline func() bool
	close        func()
}

// memberConn is what a read uses of a member's pooled connection.
type memberConn interface {
	Endpoint() url.URL
	AsCaller() http.RoundTripper
}

func (r *read) reachMember(name string) (memberConn, error) {
	if r.reach != nil {
		return r.reach(name)
	}
	return r.fleet.members.Reach(name)
}

// errMemberDeadline is why a member request is cancelled at the member
// deadline; errMemberStalled, when a streamed answer stalls.
var (
	errMemberDeadline = errors.New("the member deadline passed")
	errMemberStalled  = errors.New("the member stalled")
)

// openMember sends a GET of the read's path to a member, as the caller,
// and returns its answer once the member has sent a 200's headers; the
// member deadline covers reading the body too, unless stopDeadline or
// paceDeadline ends it.
func (r *read) openMember(ctx context.Context, name string, query url.Values) memberBody {
	if r.ask != nil {
		// Tests: the whole answer at once.
		a := r.ask(ctx, name, query)
		if a.err != nil {
			return memberBody{err: a.err}
		}
		return memberBody{body: bytes.NewReader(a.body), contentType: a.contentType, close: func() {},
			stopDeadline: func() bool { return true }, paceDeadline: func() bool { return true },
			readFailed: func(err error) error { return reach.BadGateway(name, err.Error()) }}
	}
	member, err := r.reachMember(name)
	if err != nil {
		return memberBody{err: err}
	}
	memberCtx, cancelCause := context.WithCancelCause(ctx)
	deadline := time.AfterFunc(r.fleet.memberTimeout, func() { cancelCause(errMemberDeadline) })
	cancel := func() {
		deadline.Stop()
		cancelCause(nil)
	}
	endpoint := member.Endpoint()
	location := endpoint
	location.Path = reach.JoinPath(location.Path, r.path)
	location.RawQuery = query.Encode()
	out, err := http.NewRequestWithContext(memberCtx, http.MethodGet, location.String(), nil)
	if err != nil {
		cancel()
		return memberBody{err: apierrors.NewInternalError(err)}
	}
	out.Header.Set("Accept", r.media.accept)
	resp, err := member.AsCaller().RoundTrip(out)
	if err != nil {
		cancel()
		return memberBody{err: r.memberFailed(ctx, memberCtx, out, name, endpoint.String(), err)}
	}
	closeBody := func() {
		_ = resp.Body.Close()
		cancel()
	}
	if resp.StatusCode != http.StatusOK {
		defer closeBody()
		body, _ := readBody(resp.Body, 1<<20)
		return memberBody{err: memberStatus(name, resp.StatusCode, body)}
	}
	paced := &pacedReader{r: resp.Body, timeout: r.fleet.memberTimeout}
	return memberBody{body: paced, contentType: resp.Header.Get("Content-Type"), close: closeBody,
		stopDeadline: deadline.Stop,
		paceDeadline: func() bool {
			if !deadline.Stop() {
				return false
			}
			paced.stalled = func() { cancelCause(errMemberStalled) }
			return true
		},
		readFailed: func(err error) error {
			var large *tooLarge
			if errors.As(err, &large) {
				return &apierrors.StatusError{ErrStatus: metav1.Status{
					Status: metav1.StatusFailure, Code: http.StatusRequestEntityTooLarge, Reason: metav1.StatusReasonRequestEntityTooLarge,
					Message: fmt.Sprintf("cluster %q: %v", name, err),
				}}
			}
			return r.memberFailed(ctx, memberCtx, out, name, endpoint.String(), err)
		}}
}

// memberFailed is the Status for a member request that got no (whole)
// answer: the deadline of the member, or what clusters/<name>/proxy says.
func (r *read) memberFailed(ctx, memberCtx context.Context, out *http.Request, name, endpoint string, err error) error {
	if ctx.Err() == nil {
		switch cause := context.Cause(memberCtx); {
		case errors.Is(cause, errMemberDeadline):
			proxy.RecordUpstreamError(name, string(reach.Timeout))
			return r.timedOut(name)
		case errors.Is(cause, errMemberStalled):
			proxy.RecordUpstreamError(name, string(reach.Timeout))
			return apierrors.NewTimeoutError(fmt.Sprintf("cluster %q sent nothing for %s in the middle of its answer (switchboard's --fleet-member-timeout)", name, r.fleet.memberTimeout), 0)
		}
	}
	return proxy.MemberError(out, name, endpoint, err)
}

// pacedReader is a member's body that, once stalled is set, calls it when
// one read waits longer than timeout for the member.
type pacedReader struct {
	r       io.Reader
	timeout time.Duration
	stalled func()
	stall   *time.Timer
}

func (p *pacedReader) Read(b []byte) (int, error) {
	switch {
	case p.stalled == nil:
		return p.r.Read(b)
	case p.stall == nil:
		p.stall = time.AfterFunc(p.timeout, p.stalled)
	default:
		p.stall.Reset(p.timeout)
	}
	n, err := p.r.Read(b)
	p.stall.Stop()
	return n, err
}

// memberAnswer is an error the member itself answered with, as opposed to
// switchboard's when the member gave no answer.
type memberAnswer struct {
	*apierrors.StatusError
}

func (e *memberAnswer) Unwrap() error { return e.StatusError }

// timedOut is the 504 of a member that did not answer within the member
// deadline.
func (r *read) timedOut(name string) error {
	return apierrors.NewTimeoutError(fmt.Sprintf("cluster %q did not answer within %s (switchboard's --fleet-member-timeout)", name, r.fleet.memberTimeout), 0)
}

// memberStatus is the Status a member answered with, or one made from its
// answer when that is not a Status.
func memberStatus(name string, code int, body []byte) error {
	var status metav1.Status
	if err := json.Unmarshal(body, &status); err == nil && status.Kind == "Status" {
		if status.Code == 0 {
			status.Code = int32(code)
		}
		return &memberAnswer{&apierrors.StatusError{ErrStatus: status}}
	}
	text := strings.TrimSpace(string(body))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return &memberAnswer{&apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: int32(code), Reason: metav1.StatusReasonUnknown,
		Message: fmt.Sprintf("cluster %q answered %d %s: %s", name, code, http.StatusText(code), text),
	}}}
}

// unreadable is the 502 for a member's answer that switchboard cannot read:
// an answer of the member's, so the member counts as failed, not down.
func unreadable(name, what string, err error) error {
	return &memberAnswer{reach.BadGateway(name, fmt.Sprintf("cluster %q sent %s switchboard cannot read: %v", name, what, err))}
}

// answered says whether err is the member's own answer.
func answered(err error) bool {
	var a *memberAnswer
	return errors.As(err, &a)
}

// fail notes a member that failed, unless the client has gone: that
// cancels the member requests, and is no fault of the members'.
func (r *read) fail(name string, err error) {
	if r.req.Context().Err() != nil {
		return
	}
	recordMemberFailure(name, reasonOf(err))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, failure{cluster: name, err: err})
}

// reasonOf is the metric reason of a member's failure.
func reasonOf(err error) string {
	code := int32(0)
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code = status.Status().Code
	}
	switch code {
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusGone:
		return "expired"
	case 0, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return "unreachable"
	}
	return "error"
}

// warnings are the Warning texts that name the failed members.
func (r *read) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for i, f := range r.failures {
		if i == maxWarnings {
			out = append(out, fmt.Sprintf("%d more clusters failed (see switchboard_fleet_member_failures_total)", len(r.failures)-i))
			break
		}
		out = append(out, failureText(f))
	}
	return out
}

// failureText says which member failed and why, beginning with its name.
func failureText(f failure) string {
	message := messageOf(f.err)
	if strings.HasPrefix(message, "cluster "+strconv.Quote(f.cluster)) {
		return message
	}
	return fmt.Sprintf("cluster %q: %s", f.cluster, message)
}

// outcome is ok, or partial when a member failed.
func (r *read) outcome() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) > 0 {
		return outcomePartial
	}
	return outcomeOK
}

// write sends the merged answer, with a Warning for each failed member.
func (r *read) write(w http.ResponseWriter, contentType string, obj any) (string, error) {
	var data []byte
	var err error
	if list, ok := obj.(*memberList); ok {
		data, err = encodeList(list)
	} else {
		data, err = json.Marshal(obj)
	}
	if err != nil {
		return "", apierrors.NewInternalError(fmt.Errorf("encoding the fleet's answer: %w", err))
	}
	for _, text := range r.warnings() {
		warning.AddWarning(r.req.Context(), "", reach.WarningText(text))
	}
	if contentType == "" {
		contentType = r.media.accept
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
	return r.outcome(), nil
}

// askAll asks every member in names at once, within the fleet's bound.
func (r *read) askAll(names []string, query func(name string) url.Values) []answer {
	answers := make([]answer, len(names))
	r.fleet.each(len(names), func(i int) {
		answers[i] = r.askOne(r.req.Context(), names[i], query(names[i]))
	})
	return answers
}

// callerVersions reads the caller's resourceVersion: a fleet one gives
// each member its own; "" and "0" go to every member as they are.
func (r *read) callerVersions() (Versions, error) {
	return callerVersionsOf(r.query)
}

// expiredFor is the 410 of a read from a fleet resourceVersion that a
// member no longer holds.
func expiredFor(name string, err error) error {
	return apierrors.NewResourceExpired(fmt.Sprintf("cluster %q no longer holds the resourceVersion asked for (%s); list again without one", name, messageOf(err)))
}

// isExpired says whether a member answered 410.
func isExpired(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// allFailed is the error of a read that no member answered: the first
// member's, named, with the others in the warnings.
func (r *read) allFailed() error {
	r.mu.Lock()
	if len(r.failures) == 0 {
		r.mu.Unlock()
		return apierrors.NewInternalError(fmt.Errorf("no member answered, and none failed"))
	}
	first := r.failures[0]
	r.mu.Unlock()
	return r.failedWith(first)
}

// failedWith is the error of a read that f ends: f's Status, naming its
// member, with every failed member in the warnings.
func (r *read) failedWith(f failure) error {
	for _, text := range r.warnings() {
		warning.AddWarning(r.req.Context(), "", reach.WarningText(text))
	}
	status := apierrors.APIStatus(apierrors.NewInternalError(f.err))
	if s, ok := f.err.(apierrors.APIStatus); ok {
		status = s
	}
	st := status.Status()
	st.Message = failureText(f)
	return &apierrors.StatusError{ErrStatus: st}
}

func callerVersionsOf(query url.Values) (Versions, error) {
	rv := query.Get("resourceVersion")
	if rv == "" || rv == "0" {
		return nil, nil
	}
	if !strings.HasPrefix(rv, tokenPrefix) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %s is not a fleet resourceVersion; use the resourceVersion of a list or event from this fleet endpoint, 0, or none", quoteShort(rv)))
	}
	return DecodeVersions(rv)
}

// memberQuery is the caller's query as one member gets it: with that
// member's resourceVersion from versions, or none if it has none there.
func (r *read) memberQuery(name string, versions Versions) url.Values {
	q := cloneQuery(r.query)
	if versions == nil {
		return q
	}
	if rv, ok := versions[name]; ok && listed(rv) {
		q.Set("resourceVersion", rv)
	} else {
		q.Del("resourceVersion")
		q.Del("resourceVersionMatch")
	}
	return q
}

func cloneQuery(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// get answers a get of one object: the object if one member has it, a 409
// that names the members if several do.
func (r *read) get(w http.ResponseWriter, info *request.RequestInfo) (string, error) {
	outcome, err := r.getOnce(w, info)
	if r.req.Context().Err() != nil {
		// The client has gone: no answer reaches it, and fail has left
		// out the members whose requests that cut off (so the object may
		// seem to be in none).
		return outcomeAborted, nil //nolint:nilerr // no one is left to tell.
	}
	return outcome, err
}

func (r *read) getOnce(w http.ResponseWriter, info *request.RequestInfo) (string, error) {
	versions, err := r.callerVersions()
	if err != nil {
		return "", err
	}
	answers := r.askAll(r.members, func(name string) url.Values { return r.memberQuery(name, versions) })
	m := newMerged(r.media.table)
	var found []string
	contentType := ""
	for i, name := range r.members {
		a := answers[i]
		if apierrors.IsNotFound(a.err) {
			continue
		}
		if isExpired(a.err) && versions != nil && listed(versions[name]) {
			return "", expiredFor(name, a.err)
		}
		if a.err == nil {
			a.err = m.addObject(name, a.body)
			if a.err != nil {
				a.err = unreadable(name, "an answer", a.err)
			}
		}
		if a.err != nil {
			r.fail(name, a.err)
			continue
		}
		found = append(found, name)
		if contentType == "" {
			contentType = a.contentType
		}
	}
	resource := schema.GroupResource{Group: info.APIGroup, Resource: info.Resource}
	switch {
	case len(found) > 1:
		return "", &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusConflict, Reason: metav1.StatusReasonConflict,
			Details: &metav1.StatusDetails{Group: info.APIGroup, Kind: info.Resource, Name: info.Name},
			Message: fmt.Sprintf("%s %q%s is in %d clusters: %s; ask one: /apis/%s/%s/clusters/<name>/proxy%s",
				resource.String(), info.Name, inNamespace(info.Namespace), len(found), strings.Join(found, ", "),
				cluster.GroupName, groupVersion.Version, r.path),
		}}
	case len(found) == 0:
		r.mu.Lock()
		failed := make([]string, len(r.failures))
		for i, f := range r.failures {
			failed[i] = f.cluster
		}
		r.mu.Unlock()
		if len(failed) > 0 && len(failed) == len(r.members) {
			return "", r.allFailed()
		}
		if len(failed) > 0 {
			for _, text := range r.warnings() {
				warning.AddWarning(r.req.Context(), "", reach.WarningText(text))
			}
			return "", apierrors.NewServiceUnavailable(fmt.Sprintf("%s %q%s is in no member that answered, and %s could not be asked: %s",
				resource.String(), info.Name, inNamespace(info.Namespace), plural(len(failed), "cluster", "clusters"), strings.Join(failed, ", ")))
		}
		notFound := apierrors.NewNotFound(resource, info.Name)
		notFound.ErrStatus.Message = fmt.Sprintf("%s %q%s not found in any member of fleet %q", resource.String(), info.Name, inNamespace(info.Namespace), r.fleetName)
		return "", notFound
	}
	if r.media.table {
		return r.write(w, contentType, m.list(metav1.ListMeta{}))
	}
	return r.write(w, contentType, m.items[0])
}

func inNamespace(namespace string) string {
	if namespace == "" {
		return ""
	}
	return fmt.Sprintf(" in namespace %q", namespace)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// list answers a list: every member at once without a limit, or a page
// walked member by member in name order with a limit or a continue token.
func (r *read) list(w http.ResponseWriter) (string, error) {
	limit := int64(0)
	if text := r.query.Get("limit"); text != "" {
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil || n < 0 {
			return "", apierrors.NewBadRequest(fmt.Sprintf("limit %q is not a non-negative integer", text))
		}
		limit = n
	}
	token := r.query.Get("continue")
	if limit == 0 && token == "" {
		return r.listAll(w)
	}
	return r.listPage(w, limit, token)
}

// listAll asks every member for its whole list at once. A JSON list
// streams: each member's answer is held open, once its head is in, until
// its turn.
func (r *read) listAll(w http.ResponseWriter) (string, error) {
	callerVersions, err := r.callerVersions()
	if err != nil {
		return "", err
	}
	if r.media.table {
		return r.listAllTables(w, callerVersions)
	}
	parts := make([]*memberPart, len(r.members))
	defer closeParts(parts)
	r.fleet.each(len(r.members), func(i int) {
		p := r.openList(r.req.Context(), r.members[i], r.memberQuery(r.members[i], callerVersions), nil)
		if p.err == nil {
			p.err = p.hold(r)
		}
		parts[i] = p
	})
	versions := Versions{}
	contentType := ""
	kept := make([]*memberPart, 0, len(parts))
	for i, name := range r.members {
		p := parts[i]
		if p.err != nil {
			if isExpired(p.err) && callerVersions != nil && listed(callerVersions[name]) {
				return "", expiredFor(name, p.err)
			}
			r.fail(name, p.err)
			versions[name] = markFor(p.err)
			continue
		}
		if p.meta.ResourceVersion != "" {
			versions[name] = p.meta.ResourceVersion
		}
		if contentType == "" {
			contentType = p.body.contentType
		}
		kept = append(kept, p)
	}
	if r.req.Context().Err() != nil {
		// The client has gone: no answer reaches it, and fail has left
		// out the members whose requests that cut off.
		return outcomeAborted, nil
	}
	if len(r.members) > 0 && len(kept) == 0 {
		return "", r.allFailed()
	}
	return r.writeParts(w, contentType, kept, metav1.ListMeta{ResourceVersion: EncodeVersions(versions)})
}

// listAllTables asks every member for its whole Table at once, and merges
// them.
func (r *read) listAllTables(w http.ResponseWriter, callerVersions Versions) (string, error) {
	answers := r.askAll(r.members, func(name string) url.Values { return r.memberQuery(name, callerVersions) })
	m := newMerged(r.media.table)
	versions := Versions{}
	contentType := ""
	for i, name := range r.members {
		a := answers[i]
		var meta metav1.ListMeta
		if a.err == nil {
			meta, a.err = m.add(name, a.body)
			if a.err != nil {
				a.err = unreadable(name, "a list", a.err)
			}
		}
		if a.err != nil {
			if isExpired(a.err) && callerVersions != nil && listed(callerVersions[name]) {
				return "", expiredFor(name, a.err)
			}
			r.fail(name, a.err)
			versions[name] = markFor(a.err)
			continue
		}
		if meta.ResourceVersion != "" {
			versions[name] = meta.ResourceVersion
		}
		if contentType == "" {
			contentType = a.contentType
		}
	}
	if r.req.Context().Err() != nil {
		// The client has gone: no answer reaches it, and fail has left
		// out the members whose requests that cut off.
		return outcomeAborted, nil //nolint:nilerr // no one is left to tell.
	}
	if len(r.members) > 0 && len(r.failures) == len(r.members) {
		return "", r.allFailed()
	}
	return r.write(w, contentType, m.list(metav1.ListMeta{ResourceVersion: EncodeVersions(versions)}))
}

// listPage walks one page of at most limit items (none: no bound) through
// the members in name order, from where token says.
//
// The first page records every member's resourceVersion: those it lists,
// and, for the members after the page, the resourceVersion of a list of
// one item, asked of them all once the page is known to end before them
// (while the member that ends it streams). Later pages
// list each member at exactly that resourceVersion, or go on with its own
// continue token, so the whole walk is each member's snapshot at the first
// page: nothing lost, nothing repeated. A member that fails on the first
// page is named in its warnings and left out of the walk; one that joins
// later is not in it either. When a member has compacted a resourceVersion
// away, the page is a 410, as kube-apiserver's, and client-go's pager
// lists again without a limit.
//
// In a JSON page, the members that end within the page are read whole,
// and the first that does not (its answer has a continue token) streams
// and ends the page, which may then hold fewer items than limit, as
// Kubernetes' pages may.
func (r *read) listPage(w http.ResponseWriter, limit int64, token string) (string, error) {
	var from *Continue
	if token != "" {
		if rv := r.query.Get("resourceVersion"); rv != "" && rv != "0" {
			return "", apierrors.NewBadRequest("specifying resourceVersion is not allowed when using continue")
		}
		var err error
		if from, err = DecodeContinue(token); err != nil {
			return "", err
		}
	}
	if from != nil {
		// A member of the walk still to come that is no longer in the
		// fleet (its Cluster deleted, or the caller's RBAC taken away)
		// would lose the rest of its items without a word.
		for name, rv := range from.Versions {
			if name >= from.Cluster && listed(rv) && !slices.Contains(r.members, name) {
				return "", apierrors.NewResourceExpired(fmt.Sprintf("cluster %q left the fleet in the middle of this list; list again from the start", name))
			}
		}
	}
	var callerVersions Versions
	if from == nil {
		var err error
		if callerVersions, err = r.callerVersions(); err != nil {
			return "", err
		}
	}
	versions := Versions{}
	if from != nil {
		versions = from.Versions
	}
	inWalk := func(name string) bool {
		if from == nil {
			return true
		}
		return listed(from.Versions[name])
	}
	stream := !r.media.table

	m := newMerged(r.media.table)
	var parts []*memberPart
	defer func() { closeParts(parts) }()
	count := int64(0)
	contentType := ""
	start := 0
	if from != nil {
		start = sort.SearchStrings(r.members, from.Cluster)
	}
	// probes are the answers of the members after a first page, from
	// probe(j), which asks r.members[j:] once the page is known to end
	// before them (if the member that ends it then fails, the walk goes on
	// and asks them again). Their Warnings go in the answer's headers, so
	// they are awaited before its first byte.
	var probes <-chan []answer
	probed := len(r.members)
	probe := func(j int) {
		if from == nil && j < len(r.members) && probes == nil {
			probes, probed = r.probeVersions(r.members[j:], callerVersions), j
		}
	}
	var next *Continue
	stopped := len(r.members)
walk:
	for i := start; i < len(r.members); i++ {
		name := r.members[i]
		if !inWalk(name) {
			continue
		}
		memberToken := ""
		if from != nil && name == from.Cluster {
			memberToken = from.Token
		}
		firstAsk := true
		for {
			q := cloneQuery(r.query)
			switch {
			case memberToken != "":
				q.Set("continue", memberToken)
				q.Del("resourceVersion")
				q.Del("resourceVersionMatch")
			case from == nil:
				q = r.memberQuery(name, callerVersions)
				q.Del("continue")
			default:
				q.Del("continue")
				q.Set("resourceVersion", versions[name])
				q.Set("resourceVersionMatch", string(metav1.ResourceVersionMatchExact))
			}
			q.Del("limit")
			if limit > 0 {
				q.Set("limit", strconv.FormatInt(limit-count, 10))
			}
			var meta metav1.ListMeta
			var err error
			var got int64
			var part *memberPart
			if stream {
				// The head of a member's answer says whether it ends the
				// page: if it does, the members after it are probed while
				// the first of its items are read.
				part = r.openList(r.req.Context(), name, q, func(meta metav1.ListMeta) {
					if meta.Continue != "" {
						probe(i + 1)
					}
				})
				parts = append(parts, part)
				if err = part.err; err == nil {
					meta = part.meta
					if meta.Continue != "" {
						err = part.hold(r)
					} else {
						err = part.readAll()
						got = int64(len(part.items))
					}
				}
				if err == nil && contentType == "" {
					contentType = part.body.contentType
				}
			} else {
				a := r.askOne(r.req.Context(), name, q)
				if err = a.err; err == nil {
					before := m.len()
					if meta, err = m.add(name, a.body); err != nil {
						err = unreadable(name, "a list", err)
					}
					got = int64(m.len() - before)
					if err == nil && meta.Continue != "" && limit > 0 && count+got >= limit {
						probe(i + 1)
					}
					if contentType == "" {
						contentType = a.contentType
					}
				}
			}
			if err != nil {
				if part != nil {
					part.close()
					parts = parts[:len(parts)-1]
				}
				if from != nil && r.req.Context().Err() != nil {
					return outcomeAborted, nil
				}
				if from != nil {
					// The walk's first page holds this member's
					// resourceVersion, which client-go's pager hands to the
					// informer's watch: leaving the member out now would
					// lose its items for good. A 410 makes client-go list
					// again, without pages.
					return "", apierrors.NewResourceExpired(fmt.Sprintf("cluster %q failed in the middle of this fleet list (%s); list again from the start", name, messageOf(err)))
				}
				if isExpired(err) && callerVersions != nil && listed(callerVersions[name]) {
					return "", expiredFor(name, err)
				}
				r.fail(name, err)
				versions[name] = markFor(err)
				break
			}
			if from == nil && firstAsk && meta.ResourceVersion != "" {
				versions[name] = meta.ResourceVersion
			}
			firstAsk = false
			count += got
			memberToken = meta.Continue
			full := limit > 0 && count >= limit
			if memberToken != "" && (full || stream) {
				// A streamed member ends the page whether it fills it or
				// not: its items are not counted before they go out.
				next = &Continue{Cluster: name, Token: memberToken}
				stopped = i + 1
				break walk
			}
			if memberToken == "" {
				if full {
					stopped = i + 1
					for j := i + 1; j < len(r.members); j++ {
						if inWalk(r.members[j]) {
							next = &Continue{Cluster: r.members[j]}
							break
						}
					}
					break walk
				}
				break
			}
		}
	}
	if from == nil && stopped < len(r.members) {
		// The resourceVersions of the members after this page.
		probe(stopped)
		rest := r.members[stopped:]
		answers := (<-probes)[stopped-probed:]
		for i, name := range rest {
			a := answers[i]
			if a.err == nil {
				var list memberList
				if err := json.Unmarshal(a.body, &list); err != nil {
					a.err = unreadable(name, "a list", err)
				} else if list.Metadata.ResourceVersion != "" {
					versions[name] = list.Metadata.ResourceVersion
				}
			}
			if a.err != nil {
				if isExpired(a.err) && callerVersions != nil && listed(callerVersions[name]) {
					return "", expiredFor(name, a.err)
				}
				r.fail(name, a.err)
				versions[name] = markFor(a.err)
			}
		}
		if next != nil && next.Token == "" {
			// The next page begins at a member that must be in the walk.
			next = nil
			for _, name := range rest {
				if listed(versions[name]) {
					next = &Continue{Cluster: name}
					break
				}
			}
		}
	}
	if r.req.Context().Err() != nil {
		// The client has gone: no answer reaches it, and fail has left
		// out the members whose requests that cut off.
		return outcomeAborted, nil
	}
	if from == nil && len(r.members) > 0 && len(r.failures) == len(r.members) {
		return "", r.allFailed()
	}
	meta := metav1.ListMeta{ResourceVersion: EncodeVersions(versions)}
	if next != nil {
		next.Versions = versions
		meta.Continue = EncodeContinue(next)
	}
	if stream {
		return r.writeParts(w, contentType, parts, meta)
	}
	return r.write(w, contentType, m.list(meta))
}

// probeVersions asks each member in names, at once, for a list of one
// item, whose resourceVersion a first page records for the members after
// it. The answers come on the channel, in names' order.
func (r *read) probeVersions(names []string, callerVersions Versions) <-chan []answer {
	out := make(chan []answer, 1)
	go func() {
		out <- r.askAll(names, func(name string) url.Values {
			q := r.memberQuery(name, callerVersions)
			q.Del("continue")
			q.Set("limit", "1")
			if callerVersions == nil {
				// A consistent read of one item: with resourceVersion=0 a
				// member's watch cache would ignore the limit.
				q.Del("resourceVersion")
				q.Del("resourceVersionMatch")
			}
			return q
		})
	}()
	return out
}
