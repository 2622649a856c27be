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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/klog/v2"

	"github.com/switchboard-io/switchboard/pkg/reach"
)

// A fleet watch watches each member and sends their events as they come,
// each object annotated with its member and carrying the fleet
// resourceVersion of everything sent so far: a client that watches again
// from any event's resourceVersion misses and repeats nothing.
//
// Which members it watches:
//   - from a fleet resourceVersion, the members it lists with theirs. A
//     member it marks down, or that cannot be reached when the watch
//     starts, is checked every Recheck; once it can be reached, the watch
//     ends with a 410 (Expired) event, and the client lists again and sees
//     its objects. So does a member that joins the fleet (a new Cluster, or
//     new hub RBAC). A member that refused the caller is left out.
//   - from "" or "0", every member the caller may reach; those that fail
//     to start are named in Warning headers, and rechecked as above.
//
// A member whose watch fails while it runs ends the fleet watch with an
// ERROR event that names it: a client never waits on a member that is gone,
// and a client-go informer lists again. A member that ends its watch
// cleanly (its timeout) ends the fleet watch cleanly, and the client
// watches again from the last resourceVersion, as from any API server.

// initialEventsEnd is the annotation of the bookmark that ends the initial
// events of a watch with sendInitialEvents.
const initialEventsEnd = metav1.InitialEventsAnnotationKey

// memberEvent is an event from one member's watch, or the end of it.
type memberEvent struct {
	cluster string
	event   watchEvent
	// end: the member's watch ended, with err if it failed.
	end bool
	err error
}

// watchEvent is a watch event as JSON.
type watchEvent struct {
	Type   watch.EventType `json:"type"`
	Object json.RawMessage `json:"object"`
}

// memberStream is one member's open watch.
type memberStream struct {
	cluster string
	body    io.ReadCloser
}

func (r *read) watch(w http.ResponseWriter) (string, error) {
	if r.fleet.endWatches.Err() != nil {
		// As the proxy answers new watches while it shuts down: the
		// caller retries, on another replica.
		err := apierrors.NewServiceUnavailable("switchboard is shutting down and takes no new fleet watches; retry, another replica will serve it")
		err.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
		return "", err
	}
	ctx, cancel := context.WithCancel(r.req.Context())
	defer cancel()
	initial := queryTrue(r.query, "sendInitialEvents")
	callerVersions, err := r.callerVersions()
	if err != nil {
		return "", err
	}
	versions := Versions{}
	var toWatch []string
	// waiting are members to take in once they can be reached.
	waiting := map[string]bool{}
	for _, name := range r.members {
		if callerVersions == nil {
			toWatch = append(toWatch, name)
			continue
		}
		rv, ok := callerVersions[name]
		switch {
		case ok && listed(rv):
			versions[name] = rv
			toWatch = append(toWatch, name)
		case ok && rv == markFailed:
			versions[name] = rv
		default:
			// Down when the list was made, or not in the fleet then.
			if r.fleet.members.Reachable(name) {
				return "", memberJoined(name)
			}
			versions[name] = markDown
			waiting[name] = true
		}
	}

	streams := make([]*memberStream, len(toWatch))
	errs := make([]error, len(toWatch))
	r.fleet.each(len(toWatch), func(i int) {
		open := r.openWatch
		if r.open != nil {
			open = r.open
		}
		streams[i], errs[i] = open(ctx, toWatch[i], r.memberQuery(toWatch[i], callerVersions))
	})
	var open []*memberStream
	for i, name := range toWatch {
		err := errs[i]
		if err == nil {
			open = append(open, streams[i])
			continue
		}
		if isExpired(err) || (initial && answered(err)) {
			// Expired: the client lists again. A member that refuses a
			// watch with initial events (its WatchList is off, say)
			// refuses the fleet's, and client-go lists instead.
			for _, s := range streams {
				if s != nil {
					_ = s.body.Close()
				}
			}
			if isExpired(err) {
				return "", expiredFor(name, err)
			}
			r.fail(name, err)
			return "", r.failedWith(failure{cluster: name, err: err})
		}
		r.fail(name, err)
		if answered(err) {
			// The member refused the watch: left out until the client
			// lists again.
			versions[name] = markFailed
			continue
		}
		// No answer: taken in again, with a 410, once it can be reached.
		if _, ok := versions[name]; !ok {
			versions[name] = markDown
		}
		waiting[name] = true
	}
	if initial && len(open) == 0 {
		if len(r.failures) > 0 {
			return "", r.allFailed()
		}
		// Nothing to send the initial events of, nor their kind: client-go
		// lists instead.
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("fleet %q has no member to watch", r.fleetName))
	}
	for _, text := range r.warnings() {
		warning.AddWarning(r.req.Context(), "", reach.WarningText(text))
	}

	events := make(chan memberEvent)
	for _, s := range open {
		go readEvents(ctx, s, events)
	}
	defer func() {
		for _, s := range open {
			_ = s.body.Close()
		}
	}()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	encoder := json.NewEncoder(w)
	send := func(e watchEvent) bool {
		if err := encoder.Encode(e); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	sendStatus := func(err error) {
		status := apierrors.APIStatus(apierrors.NewInternalError(err))
		if s, ok := err.(apierrors.APIStatus); ok {
			status = s
		}
		st := status.Status()
		st.Kind, st.APIVersion = "Status", "v1"
		data, _ := json.Marshal(&st)
		send(watchEvent{Type: watch.Error, Object: data})
	}

	state := newWatchState(r.media.table, versions)
	pendingInitial := map[string]bool{}
	if initial {
		for _, s := range open {
			pendingInitial[s.cluster] = true
		}
	}

	// The caller's timeout ends the watch even with no member to end it.
	var timeout <-chan time.Time
	if seconds, err := strconv.ParseInt(r.query.Get("timeoutSeconds"), 10, 64); err == nil && seconds > 0 {
		timer := time.NewTimer(time.Duration(seconds) * time.Second)
		defer timer.Stop()
		timeout = timer.C
	}
	ticker := time.NewTicker(r.fleet.recheck)
	defer ticker.Stop()
	for tick := 1; ; {
		select {
		case <-ctx.Done():
			return r.outcome(), nil
		case <-r.fleet.endWatches.Done():
			return r.outcome(), nil
		case <-timeout:
			return r.outcome(), nil
		case <-ticker.C:
			// Members that answer again every tick; new members, which
			// cost a SubjectAccessReview each, every sixth.
			if err := r.recheck(ctx, versions, waiting, tick%6 == 0); err != nil {
				sendStatus(err)
				return r.outcome(), nil
			}
			tick++
		case e := <-events:
			if e.end {
				if e.err != nil {
					r.fail(e.cluster, e.err)
					sendStatus(reach.Unavailable(e.cluster, fmt.Sprintf("cluster %q: its watch failed: %v; the fleet watch ends, watch again", e.cluster, e.err)))
					return outcomePartial, nil
				}
				// The member's own timeout: end as an API server does.
				return r.outcome(), nil
			}
			if e.event.Type == watch.Error {
				var answer *memberAnswer
				_ = errors.As(memberStatus(e.cluster, http.StatusInternalServerError, e.event.Object), &answer)
				status := answer.StatusError
				if status.ErrStatus.Code == 0 {
					status.ErrStatus.Code = http.StatusInternalServerError
				}
				r.fail(e.cluster, answer)
				status.ErrStatus.Message = failureText(failure{cluster: e.cluster, err: status})
				sendStatus(status)
				return outcomePartial, nil
			}
			out, ok, err := state.transform(e.cluster, e.event)
			if err != nil {
				sendStatus(reach.BadGateway(e.cluster, fmt.Sprintf("cluster %q sent a watch event switchboard cannot read: %v", e.cluster, err)))
				return outcomePartial, nil
			}
			if e.event.Type == watch.Bookmark && initial && pendingInitial[e.cluster] && state.endsInitialEvents(e.event) {
				// Only the last member's ends the fleet's initial events;
				// it carries the fleet resourceVersion of them all.
				delete(pendingInitial, e.cluster)
				ok = ok && len(pendingInitial) == 0
			}
			if ok && !send(out) {
				return r.outcome(), nil
			}
		}
	}
}

// memberJoined is the 410 for a watch from a resourceVersion that does
// not cover a member the caller may now reach.
func memberJoined(name string) error {
	return apierrors.NewResourceExpired(fmt.Sprintf("cluster %q can be reached through the fleet now, and the resourceVersion does not hold its objects; list again", name))
}

// recheck finds members the watch does not cover that the caller may now
// reach: one in waiting that switchboard can reach again, or,
// with members, a new one in the fleet.
func (r *read) recheck(ctx context.Context, versions Versions, waiting map[string]bool, members bool) error {
	for name := range waiting {
		if r.fleet.members.Reachable(name) {
			return memberJoined(name)
		}
	}
	if !members {
		return nil
	}
	selector, err := ParseSelector(r.fleetName)
	if err != nil {
		return err
	}
	caller, _ := request.UserFrom(r.req.Context())
	names, err := r.fleet.allowed(ctx, caller, selector)
	if err != nil {
		// Asked again at the next tick.
		klog.FromContext(ctx).V(2).Info("Rechecking the members of a fleet watch failed", "err", err)
		return nil
	}
	for _, name := range names {
		if _, ok := versions[name]; !ok {
			if r.fleet.members.Reachable(name) {
				return memberJoined(name)
			}
			versions[name] = markDown
			waiting[name] = true
		}
	}
	return nil
}

// openWatch starts one member's watch. The member must answer within the
// member deadline; its events then come for as long as the watch runs.
func (r *read) openWatch(ctx context.Context, name string, query url.Values) (*memberStream, error) {
	stream := r.openMember(ctx, name, query)
	if stream.err != nil {
		return nil, stream.err
	}
	if !stream.stopDeadline() {
		stream.close()
		return nil, r.timedOut(name)
	}
	return &memberStream{cluster: name, body: closer{Reader: stream.body, close: stream.close}}, nil
}

// closer is a member's body that close releases.
type closer struct {
	io.Reader
	close func()
}

func (c closer) Close() error {
	c.close()
	return nil
}

// readEvents decodes one member's events until its watch ends.
func readEvents(ctx context.Context, s *memberStream, events chan<- memberEvent) {
	decoder := json.NewDecoder(s.body)
	for {
		var e watchEvent
		err := decoder.Decode(&e)
		if err != nil {
			end := memberEvent{cluster: s.cluster, end: true}
			if !errors.Is(err, io.EOF) {
				end.err = err
			}
			select {
			case events <- end:
			case <-ctx.Done():
			}
			return
		}
		select {
		case events <- memberEvent{cluster: s.cluster, event: e}:
		case <-ctx.Done():
			return
		}
	}
}

// watchState rewrites members' events into the fleet's.
type watchState struct {
	table    bool
	versions Versions
	// columns are the fleet Table's, sent with its first Table event.
	columns     *merged
	headersSent bool
	// at maps each member's Table columns to the fleet's.
	at map[string][]int
}

func newWatchState(table bool, versions Versions) *watchState {
	return &watchState{table: table, versions: versions, columns: newMerged(true), at: map[string][]int{}}
}

// transform rewrites one member event: the object is annotated with its
// member and carries the fleet resourceVersion. ok is false for an event
// that is not sent.
func (s *watchState) transform(cluster string, e watchEvent) (watchEvent, bool, error) {
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(e.Object, &head); err != nil {
		return e, false, err
	}
	if head.Kind == "Table" && head.APIVersion != "" && s.table {
		return s.transformTable(cluster, e)
	}
	if head.Metadata.ResourceVersion != "" {
		s.versions[cluster] = head.Metadata.ResourceVersion
	}
	object := e.Object
	var err error
	if e.Type != watch.Bookmark {
		if object, err = annotate(object, cluster); err != nil {
			return e, false, err
		}
	}
	if object, err = setResourceVersion(object, EncodeVersions(s.versions)); err != nil {
		return e, false, err
	}
	return watchEvent{Type: e.Type, Object: object}, true, nil
}

func (s *watchState) transformTable(cluster string, e watchEvent) (watchEvent, bool, error) {
	var table metav1.Table
	if err := json.Unmarshal(e.Object, &table); err != nil {
		return e, false, err
	}
	if len(table.ColumnDefinitions) > 0 {
		at := make([]int, len(table.ColumnDefinitions))
		for i, column := range table.ColumnDefinitions {
			if s.headersSent {
				// The fleet's columns went out with its first event.
				at[i] = -1
				if j, ok := s.columns.index[column.Name]; ok {
					at[i] = j
				}
				continue
			}
			at[i] = s.columns.column(column)
		}
		s.at[cluster] = at
	}
	at := s.at[cluster]
	rv := table.ResourceVersion
	for i, row := range table.Rows {
		cells := make([]any, len(s.columns.columns))
		if len(cells) == 0 {
			cells = make([]any, 1)
		}
		cells[0] = cluster
		for j, cell := range row.Cells {
			if j < len(at) && at[j] >= 0 && at[j] < len(cells) {
				cells[at[j]] = cell
			}
		}
		table.Rows[i].Cells = cells
		if len(row.Object.Raw) > 0 {
			var meta struct {
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(row.Object.Raw, &meta); err == nil && meta.Metadata.ResourceVersion != "" {
				rv = meta.Metadata.ResourceVersion
			}
			annotated, err := annotate(row.Object.Raw, cluster)
			if err != nil {
				return e, false, err
			}
			table.Rows[i].Object = runtime.RawExtension{Raw: annotated}
		}
	}
	if rv != "" {
		s.versions[cluster] = rv
	}
	table.ResourceVersion = EncodeVersions(s.versions)
	table.ColumnDefinitions = nil
	if !s.headersSent && len(s.columns.columns) > 0 {
		table.ColumnDefinitions = s.columns.columns
		s.headersSent = true
	}
	data, err := json.Marshal(&table)
	if err != nil {
		return e, false, err
	}
	return watchEvent{Type: e.Type, Object: data}, true, nil
}

// endsInitialEvents says whether a member's bookmark ends its initial events.
func (s *watchState) endsInitialEvents(e watchEvent) bool {
	var meta struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	return json.Unmarshal(e.Object, &meta) == nil && meta.Metadata.Annotations[initialEventsEnd] == "true"
}

// setResourceVersion sets a JSON object's metadata.resourceVersion.
func setResourceVersion(object []byte, rv string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(object, &fields); err != nil {
		return nil, err
	}
	metadata := map[string]json.RawMessage{}
	if raw, ok := fields["metadata"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &metadata); err != nil {
			return nil, err
		}
	}
	var err error
	if metadata["resourceVersion"], err = json.Marshal(rv); err != nil {
		return nil, err
	}
	if fields["metadata"], err = json.Marshal(metadata); err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}

// queryTrue reads a boolean query parameter as kube-apiserver decodes
// ListOptions: strconv.ParseBool, anything else false.
func queryTrue(q url.Values, name string) bool {
	v, err := strconv.ParseBool(q.Get(name))
	return err == nil && v
}
