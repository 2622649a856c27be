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
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/component-base/metrics/testutil"

	"github.com/switchboard-io/switchboard/pkg/reach"
)

// unevenFleet is members of uneven sizes, some empty, in name order.
func unevenFleet() (map[string]*fakeMember, []string) {
	members := map[string]*fakeMember{
		"a": newFakeMember(10),
		"b": newFakeMember(20, "b1", "b2", "b3"),
		"c": newFakeMember(30, "c1"),
		"d": newFakeMember(40, "d1", "d2", "d3", "d4", "d5", "d6", "d7"),
		"e": newFakeMember(50),
		"f": newFakeMember(60, "f1", "f2"),
	}
	return members, []string{"a", "b", "c", "d", "e", "f"}
}

// walk lists every page with limit, changing the members after the first,
// and returns the items in order.
func walk(t *testing.T, members map[string]*fakeMember, names []string, limit int) ([]string, int) {
	t.Helper()
	var got []string
	token := ""
	pages := 0
	firstRV := ""
	for {
		q := fmt.Sprintf("limit=%d", limit)
		if token != "" {
			q += "&continue=" + url.QueryEscape(token)
		}
		p, err := listOnce(t, newTestRead(t, members, names, q, false))
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		if len(p.list.Items) > limit {
			t.Fatalf("page %d holds %d items, more than the limit %d", pages, len(p.list.Items), limit)
		}
		if firstRV == "" {
			firstRV = p.list.Metadata.ResourceVersion
			// Every member changes once the walk has begun.
			for name, m := range members {
				m.add(name + "-new")
			}
		} else if p.list.Metadata.ResourceVersion != firstRV {
			t.Errorf("page %d has resourceVersion %q, the first had %q", pages, p.list.Metadata.ResourceVersion, firstRV)
		}
		for _, item := range p.list.Items {
			got = append(got, itemKey(t, item))
		}
		token = p.list.Metadata.Continue
		if token == "" {
			break
		}
		if pages > 100 {
			t.Fatal("the walk does not end")
		}
	}
	versions, err := DecodeVersions(firstRV)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if !listed(versions[name]) {
			t.Errorf("the list's resourceVersion holds no resourceVersion of %q: %v", name, versions)
		}
	}
	return got, pages
}

// TestPageWalkLosesAndRepeatsNothing walks members of uneven sizes with
// every limit from 1 to past the whole fleet. Every member gains an item
// after the first page; the walk must still be the first page's snapshot.
func TestPageWalkLosesAndRepeatsNothing(t *testing.T) {
	members, names := unevenFleet()
	var want []string
	for _, name := range names {
		for _, item := range members[name].snapshots[members[name].rv] {
			want = append(want, name+"/"+item)
		}
	}
	for limit := 1; limit <= len(want)+1; limit++ {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			members, names := unevenFleet()
			got, pages := walk(t, members, names, limit)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the walk:\n got %v\nwant %v", got, want)
			}
			if most := (len(want) + limit - 1) / limit; pages > most+1 {
				t.Errorf("%d pages for %d items at %d a page", pages, len(want), limit)
			}
		})
	}
}

// TestPageWalkWithAFailedMember: a member that fails on the first page is
// named in a warning and left out of the whole walk; the others' items all
// come back.
func TestPageWalkWithAFailedMember(t *testing.T) {
	RegisterMetrics()
	before, _ := testutil.GetCounterMetricValue(memberFailuresTotal.WithLabelValues("d", "forbidden"))
	members, names := unevenFleet()
	members["d"].err = apierrors.NewForbidden(podsResource, "", fmt.Errorf(`User "alice" cannot list resource "pods"`))
	p, err := listOnce(t, newTestRead(t, members, names, "limit=2", false))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.warnings) != 1 || !strings.Contains(p.warnings[0], `cluster "d"`) || !strings.Contains(p.warnings[0], "forbidden") {
		t.Errorf("warnings %q: want one that names cluster d and says forbidden", p.warnings)
	}
	if after, _ := testutil.GetCounterMetricValue(memberFailuresTotal.WithLabelValues("d", "forbidden")); after != before+1 {
		t.Errorf("switchboard_fleet_member_failures_total{cluster=d,reason=forbidden} went from %v to %v, want one more", before, after)
	}
	members["d"].err = nil
	got, _ := walkFrom(t, members, names, 2, p)
	want := []string{"b/b1", "b/b2", "b/b3", "c/c1", "f/f1", "f/f2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the walk:\n got %v\nwant %v", got, want)
	}
}

// walkFrom goes on from a first page.
func walkFrom(t *testing.T, members map[string]*fakeMember, names []string, limit int, first page) ([]string, int) {
	var got []string
	for _, item := range first.list.Items {
		got = append(got, itemKey(t, item))
	}
	pages := 1
	for token := first.list.Metadata.Continue; token != ""; pages++ {
		p, err := listOnce(t, newTestRead(t, members, names, fmt.Sprintf("limit=%d&continue=%s", limit, url.QueryEscape(token)), false))
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range p.list.Items {
			got = append(got, itemKey(t, item))
		}
		token = p.list.Metadata.Continue
	}
	return got, pages
}

// TestPageWalkExpired: a member that no longer holds the first page's
// snapshot makes the page a 410, which client-go's pager answers with a
// full list.
func TestPageWalkExpired(t *testing.T) {
	members, names := unevenFleet()
	p, err := listOnce(t, newTestRead(t, members, names, "limit=2", false))
	if err != nil {
		t.Fatal(err)
	}
	delete(members["d"].snapshots, 40)
	members["d"].add("x")
	walkToA410(t, members, names, p.list.Metadata.Continue, "d")
}

// walkToA410 walks on from token, two items a page, and wants a 410 that
// names member before the walk ends.
func walkToA410(t *testing.T, members map[string]*fakeMember, names []string, token, member string) {
	t.Helper()
	for token != "" {
		next, err := listOnce(t, newTestRead(t, members, names, "limit=2&continue="+url.QueryEscape(token), false))
		if err != nil {
			if !apierrors.IsResourceExpired(err) || !strings.Contains(err.Error(), fmt.Sprintf("cluster %q", member)) {
				t.Fatalf("got %v, want a 410 that names cluster %s", err, member)
			}
			return
		}
		token = next.list.Metadata.Continue
	}
	t.Fatalf("the walk ended without a 410 for cluster %s", member)
}

func TestListAllAtOnce(t *testing.T) {
	members, names := unevenFleet()
	members["e"].err = apierrors.NewServiceUnavailable(`cluster "e" is unreachable: its last probe failed`)
	p, err := listOnce(t, newTestRead(t, members, names, "", false))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.list.Items) != 13 || p.list.Kind != "PodList" {
		t.Errorf("got %d items of kind %q, want 13 of PodList", len(p.list.Items), p.list.Kind)
	}
	if p.list.Metadata.Continue != "" {
		t.Errorf("a list without a limit has a continue token")
	}
	versions, err := DecodeVersions(p.list.Metadata.ResourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	want := Versions{"a": "10", "b": "20", "c": "30", "d": "40", "e": markDown, "f": "60"}
	if !reflect.DeepEqual(versions, want) {
		t.Errorf("resourceVersion %v, want %v", versions, want)
	}
	if len(p.warnings) != 1 || p.warnings[0] != `cluster "e" is unreachable: its last probe failed` {
		t.Errorf("warnings %q", p.warnings)
	}

	// A list from that resourceVersion gives each member its own.
	r := newTestRead(t, members, names, "resourceVersion="+url.QueryEscape(p.list.Metadata.ResourceVersion)+"&resourceVersionMatch=Exact", false)
	members["d"].add("d8")
	again, err := listOnce(t, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.list.Items) != 13 {
		t.Errorf("a list at the first list's resourceVersion has %d items, want 13", len(again.list.Items))
	}
}

func TestBadListRequests(t *testing.T) {
	members, names := unevenFleet()
	for name, query := range map[string]string{
		"a member's resourceVersion": "resourceVersion=123",
		"a broken fleet one":         "resourceVersion=f1.xyz",
		"a broken continue token":    "limit=1&continue=abc",
		"continue with a version":    "limit=1&continue=f1.e30&resourceVersion=0",
		"a negative limit":           "limit=-1",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := listOnce(t, newTestRead(t, members, names, query, false))
			if !apierrors.IsBadRequest(err) {
				t.Errorf("got %v, want a 400", err)
			}
		})
	}
}

func TestGetOneOrConflict(t *testing.T) {
	get := func(t *testing.T, members map[string]*fakeMember, names []string) (*httptest.ResponseRecorder, error) {
		r := newTestRead(t, members, names, "", false)
		r.ask = func(_ context.Context, name string, _ url.Values) answer {
			m := members[name]
			if m.err != nil {
				return answer{err: m.err}
			}
			for _, item := range m.snapshots[m.rv] {
				if item == "web" {
					return answer{body: []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","namespace":"ns"}}`)}
				}
			}
			return answer{err: apierrors.NewNotFound(podsResource, "web")}
		}
		w := httptest.NewRecorder()
		_, err := r.get(w, &request.RequestInfo{Verb: "get", Resource: "pods", Namespace: "ns", Name: "web"})
		return w, err
	}
	t.Run("in one member", func(t *testing.T) {
		members := map[string]*fakeMember{"a": newFakeMember(1, "web"), "b": newFakeMember(1, "db")}
		w, err := get(t, members, []string{"a", "b"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(w.Body.String(), `"switchboard.io/cluster":"a"`) {
			t.Errorf("the object %s does not name member a", w.Body.String())
		}
	})
	t.Run("in two", func(t *testing.T) {
		members := map[string]*fakeMember{"a": newFakeMember(1, "web"), "b": newFakeMember(1, "db"), "c": newFakeMember(1, "web")}
		_, err := get(t, members, []string{"a", "b", "c"})
		if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "a, c") || !strings.Contains(err.Error(), "clusters/<name>/proxy") {
			t.Errorf("got %v, want a 409 that names a and c and says where to ask", err)
		}
	})
	t.Run("in none", func(t *testing.T) {
		members := map[string]*fakeMember{"a": newFakeMember(1, "db")}
		_, err := get(t, members, []string{"a"})
		if !apierrors.IsNotFound(err) {
			t.Errorf("got %v, want a 404", err)
		}
	})
	t.Run("in none that answered", func(t *testing.T) {
		members := map[string]*fakeMember{"a": newFakeMember(1, "db"), "b": newFakeMember(1)}
		members["b"].err = apierrors.NewServiceUnavailable("down")
		_, err := get(t, members, []string{"a", "b"})
		if status, ok := err.(apierrors.APIStatus); !ok || status.Status().Code != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "b") {
			t.Errorf("got %v, want a 503 that names b", err)
		}
	})
}

// A member that fails after the first page fails the page with 410: the
// first page's resourceVersion, which client-go's pager hands on to an
// informer's watch, holds the member, so skipping it would lose its items.
func TestPageWalkMemberFailsLater(t *testing.T) {
	members, names := unevenFleet()
	p, err := listOnce(t, newTestRead(t, members, names, "limit=2", false))
	if err != nil {
		t.Fatal(err)
	}
	members["d"].err = &memberAnswer{apierrors.NewServiceUnavailable("etcd is down")}
	walkToA410(t, members, names, p.list.Metadata.Continue, "d")
}

// A list from a fleet resourceVersion that a member has compacted away is
// a 410, as kube-apiserver's, not a list without the member.
func TestListFromAnExpiredResourceVersion(t *testing.T) {
	members, names := unevenFleet()
	rv := EncodeVersions(Versions{"a": "10", "b": "20", "c": "30", "d": "39", "e": "50", "f": "60"})
	for _, query := range []string{"", "limit=3&"} {
		_, err := listOnce(t, newTestRead(t, members, names, query+"resourceVersionMatch=Exact&resourceVersion="+url.QueryEscape(rv), false))
		if !apierrors.IsResourceExpired(err) || !strings.Contains(err.Error(), `cluster "d"`) {
			t.Errorf("%q: got %v, want a 410 that names cluster d", query, err)
		}
	}
}

// When no member answers, the fleet answers with the first member's error,
// not an empty list.
func TestListWhereEveryMemberFails(t *testing.T) {
	members := map[string]*fakeMember{"a": newFakeMember(1), "b": newFakeMember(1)}
	for _, m := range members {
		m.err = &memberAnswer{apierrors.NewBadRequest(`unable to parse requirement: "bogus"`)}
	}
	for _, query := range []string{"", "limit=1"} {
		_, err := listOnce(t, newTestRead(t, members, []string{"a", "b"}, query, false))
		if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `cluster "a"`) {
			t.Errorf("%q: got %v, want member a's 400", query, err)
		}
	}
	// A fleet of no members is an empty list.
	p, err := listOnce(t, newTestRead(t, members, nil, "", false))
	if err != nil || len(p.list.Items) != 0 || p.list.Kind != "List" {
		t.Errorf("an empty fleet: %+v, %v", p.list, err)
	}
}

func TestMarks(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{reach.Unavailable("m", "cluster m is unreachable"), markDown},
		{&memberAnswer{apierrors.NewServiceUnavailable("the member's own 503")}, markFailed},
		{&memberAnswer{apierrors.NewForbidden(podsResource, "", fmt.Errorf("no"))}, markFailed},
		{apierrors.NewTimeoutError("did not answer within 20s", 0), markFailed},
	} {
		if got := markFor(tc.err); got != tc.want {
			t.Errorf("markFor(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestContinueWithResourceVersionZero(t *testing.T) {
	members, names := unevenFleet()
	p, err := listOnce(t, newTestRead(t, members, names, "limit=2", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listOnce(t, newTestRead(t, members, names, "limit=2&resourceVersion=0&continue="+url.QueryEscape(p.list.Metadata.Continue), false)); err != nil {
		t.Errorf("continue with resourceVersion=0, which kube-apiserver allows: %v", err)
	}
}

// A member of the walk that leaves the fleet (its Cluster deleted, or the
// caller's RBAC for it taken away) makes the next page a 410, rather than
// losing the rest of its items without a word.
func TestPageWalkMemberLeaves(t *testing.T) {
	members, names := unevenFleet()
	p, err := listOnce(t, newTestRead(t, members, names, "limit=2", false))
	if err != nil {
		t.Fatal(err)
	}
	walkToA410(t, members, []string{"a", "b", "c", "e", "f"}, p.list.Metadata.Continue, "d")
}
