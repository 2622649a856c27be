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
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// bodiesRead is a fleet read whose members answer every list with bodies.
func bodiesRead(t *testing.T, rawQuery string, bodies map[string]string) *read {
	names := make([]string, 0, len(bodies))
	for _, name := range []string{"a", "b", "c"} {
		if _, ok := bodies[name]; ok {
			names = append(names, name)
		}
	}
	r := newTestRead(t, nil, names, rawQuery, false)
	r.ask = func(_ context.Context, name string, _ url.Values) answer {
		return answer{body: []byte(bodies[name]), contentType: "application/json"}
	}
	return r
}

func decodePage(t *testing.T, w *httptest.ResponseRecorder) (memberList, []string) {
	t.Helper()
	var list memberList
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
		t.Fatalf("%s: %v", w.Body.String(), err)
	}
	var keys []string
	for _, item := range list.Items {
		keys = append(keys, itemKey(t, item))
	}
	return list, keys
}

func TestStreamedPages(t *testing.T) {
	t.Run("a member that fills a later page", func(t *testing.T) {
		versions := Versions{"a": "5"}
		r := bodiesRead(t, "limit=2&continue="+EncodeContinue(&Continue{Cluster: "a", Versions: versions}), map[string]string{
			"a": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5","continue":"next"},"items":[{"metadata":{"name":"p1"}},{"metadata":{"name":"p2"}}]}`,
		})
		w := httptest.NewRecorder()
		if _, err := r.list(w); err != nil {
			t.Fatal(err)
		}
		list, keys := decodePage(t, w)
		if list.Kind != "PodList" || strings.Join(keys, " ") != "a/p1 a/p2" {
			t.Errorf("the page: %s", w.Body.String())
		}
		if w.Header().Get("Content-Length") != "" {
			t.Errorf("a streamed page has a Content-Length")
		}
		c, err := DecodeContinue(list.Metadata.Continue)
		if err != nil || c.Cluster != "a" || c.Token != "next" || c.Versions["a"] != "5" || list.Metadata.ResourceVersion != EncodeVersions(versions) {
			t.Errorf("the page's metadata %+v (%+v, %v)", list.Metadata, c, err)
		}
	})

	t.Run("a first page: a member read whole, then one that streams", func(t *testing.T) {
		r := bodiesRead(t, "limit=3", map[string]string{
			"a": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"p1"}}]}`,
			"b": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7","continue":"next"},"items":[{"metadata":{"name":"q1"}},{"metadata":{"name":"q2"}}]}`,
			"c": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"x"},"items":[{"metadata":{"name":"r1"}}]}`,
		})
		w := httptest.NewRecorder()
		if _, err := r.list(w); err != nil {
			t.Fatal(err)
		}
		list, keys := decodePage(t, w)
		if strings.Join(keys, " ") != "a/p1 b/q1 b/q2" {
			t.Errorf("the page's items: %v", keys)
		}
		c, err := DecodeContinue(list.Metadata.Continue)
		if err != nil || c.Cluster != "b" || c.Token != "next" {
			t.Errorf("the page goes on at %+v (%v), want b's token", c, err)
		}
		// c's resourceVersion comes from its probe, asked while a listed.
		if want := EncodeVersions(Versions{"a": "5", "b": "7", "c": "9"}); list.Metadata.ResourceVersion != want {
			t.Errorf("resourceVersion %s, want %s", list.Metadata.ResourceVersion, want)
		}
	})

	t.Run("one LIST streams every member, and warns of the failed", func(t *testing.T) {
		r := bodiesRead(t, "", map[string]string{
			"a": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"p1"}},{"metadata":{"name":"p2"}}]}`,
			"b": `not JSON`,
			"c": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"r1"}}]}`,
		})
		w := httptest.NewRecorder()
		if _, err := r.list(w); err != nil {
			t.Fatal(err)
		}
		list, keys := decodePage(t, w)
		if strings.Join(keys, " ") != "a/p1 a/p2 c/r1" {
			t.Errorf("the items: %v", keys)
		}
		if want := EncodeVersions(Versions{"a": "5", "b": markFailed, "c": "9"}); list.Metadata.ResourceVersion != want {
			t.Errorf("resourceVersion %s, want %s", list.Metadata.ResourceVersion, want)
		}
		if warnings := r.warnings(); len(warnings) != 1 || !strings.HasPrefix(warnings[0], `cluster "b"`) {
			t.Errorf("warnings %q, want one for b", warnings)
		}
	})

	for name, body := range map[string]string{
		"items before metadata": `{"kind":"PodList","items":[{"metadata":{"name":"p1"}}],"metadata":{"continue":"next"}}`,
		"null items":            `{"kind":"PodList","metadata":{"continue":"next"},"items":null}`,
	} {
		t.Run(name+": read whole", func(t *testing.T) {
			r := bodiesRead(t, "limit=2", map[string]string{"a": body})
			w := httptest.NewRecorder()
			if _, err := r.list(w); err != nil {
				t.Fatal(err)
			}
			var want memberList
			if err := json.Unmarshal([]byte(body), &want); err != nil {
				t.Fatal(err)
			}
			list, _ := decodePage(t, w)
			if len(list.Items) != len(want.Items) || list.Kind != "PodList" {
				t.Errorf("the page %s, from %s", w.Body.String(), body)
			}
		})
	}

	for name, body := range map[string]string{
		"a name twice in an item":              `{"kind":"PodList","metadata":{},"items":[{"metadata":{"name":"p1","name":"p2"}}]}`,
		"the annotation twice in an item":      `{"kind":"PodList","metadata":{},"items":[{"metadata":{"annotations":{"` + ClusterAnnotation + `":"x","` + ClusterAnnotation + `":"y"}}}]}`,
		"the metadata twice in the head":       `{"kind":"PodList","metadata":{"resourceVersion":"5"},"metadata":{"resourceVersion":"9"},"items":[]}`,
		"a name twice after the items":         `{"kind":"PodList","metadata":{},"items":[{"metadata":{"name":"p1"}}],"x":1,"x":2}`,
		"a name twice, items first":            `{"apiVersion":"v1","items":[{"metadata":{"name":"p1"}}],"kind":"PodList","kind":"List","metadata":{}}`,
		"a name twice in an item, items first": `{"apiVersion":"v1","items":[{"metadata":{"name":"p1","name":"p2"}}],"kind":"PodList","metadata":{}}`,
		"a second JSON value":                  `{"kind":"PodList","metadata":{},"items":[]} {"kind":"PodList"}`,
	} {
		for query := range map[string]bool{"limit=2": true, "": true} {
			t.Run(name+" fails the member ("+query+")", func(t *testing.T) {
				r := bodiesRead(t, query, map[string]string{
					"a": body,
					"b": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"q1"}}]}`,
				})
				w := httptest.NewRecorder()
				if _, err := r.list(w); err != nil {
					t.Fatal(err)
				}
				if _, keys := decodePage(t, w); strings.Join(keys, " ") != "b/q1" {
					t.Errorf("the items: %v", keys)
				}
				if warnings := r.warnings(); len(warnings) != 1 || !strings.HasPrefix(warnings[0], `cluster "a" sent a list switchboard cannot read`) {
					t.Errorf("warnings %q, want that a's list cannot be read", warnings)
				}
			})
		}
	}

	for name, query := range map[string]string{"a page": "limit=2", "one LIST": ""} {
		t.Run(name+": a member that breaks off past what is read whole breaks off the answer", func(t *testing.T) {
			r := bodiesRead(t, query, map[string]string{
				"a": `{"kind":"PodList","metadata":{"continue":"next"},"items":[` + manyItems(2*wholeBytes) + `,{"metad`,
			})
			defer func() {
				if got, _ := recover().(error); !errors.Is(got, http.ErrAbortHandler) {
					t.Errorf("recovered %v, want http.ErrAbortHandler", got)
				}
			}()
			_, _ = r.list(httptest.NewRecorder())
			t.Error("no panic")
		})
	}

	for name, query := range map[string]string{"a page": "limit=2", "one LIST": ""} {
		t.Run(name+": a member that breaks off within what is read whole fails alone", func(t *testing.T) {
			r := bodiesRead(t, query, map[string]string{
				"a": `{"kind":"PodList","metadata":{"continue":"next"},"items":[{"metadata":{"name":"p1"}},{"metad`,
				"b": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"q1"}}]}`,
			})
			w := httptest.NewRecorder()
			if _, err := r.list(w); err != nil {
				t.Fatal(err)
			}
			_, keys := decodePage(t, w)
			if strings.Join(keys, " ") != "b/q1" {
				t.Errorf("the items: %v", keys)
			}
			if warnings := r.warnings(); len(warnings) != 1 || !strings.HasPrefix(warnings[0], `cluster "a"`) {
				t.Errorf("warnings %q, want one for a", warnings)
			}
		})
	}

	t.Run("a member that breaks off before the page begins fails the member", func(t *testing.T) {
		r := bodiesRead(t, "limit=5", map[string]string{
			"a": `{"kind":"PodList","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"p1"}},{"metad`,
			"b": `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"q1"}}]}`,
		})
		w := httptest.NewRecorder()
		if _, err := r.list(w); err != nil {
			t.Fatal(err)
		}
		_, keys := decodePage(t, w)
		if strings.Join(keys, " ") != "b/q1" {
			t.Errorf("the items: %v", keys)
		}
		if warnings := r.warnings(); len(warnings) != 1 || !strings.HasPrefix(warnings[0], `cluster "a"`) {
			t.Errorf("warnings %q, want one for a", warnings)
		}
	})
}

// manyItems is a run of pod items, comma-separated, of at least size bytes.
func manyItems(size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"metadata":{"name":"p%d","namespace":"default"}}`, i)
	}
	return b.String()
}
