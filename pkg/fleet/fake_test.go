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
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/switchboard-io/switchboard/pkg/reach"
)

// fakeMember is a member's pod list as kube-apiserver pages it: items in
// name order, continue tokens that hold the snapshot's resourceVersion and
// an offset, and old snapshots kept for lists at an exact resourceVersion.
type fakeMember struct {
	mu        sync.Mutex
	rv        int
	snapshots map[int][]string
	// err, when set, is every answer.
	err error
	// asked counts the requests.
	asked int
}

func newFakeMember(rv int, names ...string) *fakeMember {
	return &fakeMember{rv: rv, snapshots: map[int][]string{rv: names}}
}

// add makes a new snapshot with one more item.
func (m *fakeMember) add(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	items := append(append([]string(nil), m.snapshots[m.rv]...), name)
	m.rv++
	m.snapshots[m.rv] = items
}

func (m *fakeMember) list(q url.Values) answer {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked++
	if m.err != nil {
		return answer{err: m.err}
	}
	rv, offset := m.rv, 0
	if token := q.Get("continue"); token != "" {
		if q.Get("resourceVersion") != "" {
			return answer{err: apierrors.NewBadRequest("resourceVersion with continue")}
		}
		if _, err := fmt.Sscanf(token, "%d/%d", &rv, &offset); err != nil {
			return answer{err: apierrors.NewBadRequest("bad member token " + token)}
		}
	} else if text := q.Get("resourceVersion"); text != "" && text != "0" {
		n, err := strconv.Atoi(text)
		if err != nil {
			return answer{err: apierrors.NewBadRequest("member got resourceVersion " + text)}
		}
		if q.Get("resourceVersionMatch") != "Exact" {
			return answer{err: apierrors.NewBadRequest("expected resourceVersionMatch=Exact")}
		}
		rv = n
	}
	items, ok := m.snapshots[rv]
	if !ok {
		return answer{err: apierrors.NewResourceExpired("too old resource version")}
	}
	end := len(items)
	if text := q.Get("limit"); text != "" {
		limit, _ := strconv.Atoi(text)
		if limit <= 0 {
			return answer{err: apierrors.NewBadRequest("member got limit " + text)}
		}
		end = min(offset+limit, len(items))
	}
	list := memberList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}, Metadata: metav1.ListMeta{ResourceVersion: strconv.Itoa(rv)}}
	for _, name := range items[offset:end] {
		list.Items = append(list.Items, json.RawMessage(fmt.Sprintf(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":%q,"resourceVersion":"%d"}}`, name, rv)))
	}
	if end < len(items) {
		list.Metadata.Continue = fmt.Sprintf("%d/%d", rv, end)
	}
	body, _ := json.Marshal(list)
	return answer{body: body, contentType: "application/json"}
}

// downReacher reaches no member: as the proxy says of members known down.
type downReacher struct{}

func (downReacher) Reach(name string) (*reach.Member, error) {
	return nil, reach.Unavailable(name, fmt.Sprintf("cluster %q is unreachable: its last probe failed", name))
}

func (downReacher) Reachable(string) bool { return false }

func (downReacher) Connect(context.Context, string, string, rest.Responder) (http.Handler, error) {
	return nil, apierrors.NewServiceUnavailable("no member")
}

// newTestRead is a fleet read of path with query, by a user, over fake members.
func newTestRead(t testing.TB, members map[string]*fakeMember, names []string, rawQuery string, table bool) *read {
	t.Helper()
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/apis/cluster.switchboard.io/v1alpha1/fleets/*/proxy/api/v1/pods?"+rawQuery, nil)
	req = req.WithContext(request.WithUser(req.Context(), &user.DefaultInfo{Name: "alice"}))
	accept := "application/json"
	if table {
		accept = "application/json;as=Table;g=meta.k8s.io;v=v1"
	}
	return &read{
		fleet:     New(Config{MembersInFlight: 3, MemberTimeout: time.Second, Recheck: time.Hour, Members: downReacher{}}),
		req:       req,
		fleetName: All,
		path:      "/api/v1/pods",
		query:     query,
		media:     media{accept: accept, table: table},
		members:   names,
		ask: func(_ context.Context, name string, q url.Values) answer {
			m, ok := members[name]
			if !ok {
				t.Errorf("asked %q, which is no member", name)
				return answer{err: apierrors.NewNotFound(schema.GroupResource{Resource: "clusters"}, name)}
			}
			return m.list(q)
		},
	}
}

// page is one fleet list page as a client reads it.
type page struct {
	list     memberList
	warnings []string
}

func listOnce(t *testing.T, r *read) (page, error) {
	t.Helper()
	w := httptest.NewRecorder()
	if _, err := r.list(w); err != nil {
		return page{}, err
	}
	var p page
	if err := json.Unmarshal(w.Body.Bytes(), &p.list); err != nil {
		t.Fatalf("decoding the page %s: %v", w.Body.String(), err)
	}
	for _, f := range r.failures {
		p.warnings = append(p.warnings, failureText(f))
	}
	return p, nil
}

// itemKey is an item's member and name, from its annotation.
func itemKey(t *testing.T, item json.RawMessage) string {
	t.Helper()
	var obj metav1.PartialObjectMetadata
	if err := json.Unmarshal(item, &obj); err != nil {
		t.Fatal(err)
	}
	return obj.Annotations[ClusterAnnotation] + "/" + obj.Name
}

var podsResource = schema.GroupResource{Resource: "pods"}
