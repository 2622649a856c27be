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
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestStreamPage(t *testing.T) {
	versions := Versions{"a": "5"}
	stream := func(t *testing.T, body string) (bool, answer, *httptest.ResponseRecorder) {
		r := newTestRead(t, nil, []string{"a"}, "limit=2", false)
		r.ask = func(context.Context, string, url.Values) answer {
			return answer{body: []byte(body), contentType: "application/json"}
		}
		w := httptest.NewRecorder()
		streamed, a := r.streamPage(w, "a", url.Values{}, versions)
		return streamed, a, w
	}

	t.Run("a member that fills the page", func(t *testing.T) {
		streamed, _, w := stream(t, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5","continue":"next"},"items":[{"metadata":{"name":"p1"}},{"metadata":{"name":"p2"}}]}`)
		if !streamed {
			t.Fatal("not streamed")
		}
		var list memberList
		if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
			t.Fatalf("%s: %v", w.Body.String(), err)
		}
		if list.Kind != "PodList" || len(list.Items) != 2 || itemKey(t, list.Items[1]) != "a/p2" {
			t.Errorf("the page: %s", w.Body.String())
		}
		c, err := DecodeContinue(list.Metadata.Continue)
		if err != nil || c.Cluster != "a" || c.Token != "next" || c.Versions["a"] != "5" || list.Metadata.ResourceVersion != EncodeVersions(versions) {
			t.Errorf("the page's metadata %+v (%+v, %v)", list.Metadata, c, err)
		}
	})

	for name, body := range map[string]string{
		"no continue: another member follows": `{"kind":"PodList","metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"p1"}}]}`,
		"items before metadata":               `{"kind":"PodList","items":[{"metadata":{"name":"p1"}}],"metadata":{"continue":"next"}}`,
		"null items":                          `{"kind":"PodList","metadata":{"continue":"next"},"items":null}`,
	} {
		t.Run(name, func(t *testing.T) {
			streamed, a, w := stream(t, body)
			if streamed || w.Body.Len() > 0 {
				t.Fatalf("streamed %q", w.Body.String())
			}
			if a.err != nil || string(a.body) != body {
				t.Errorf("the answer handed back: %q, %v; want the member's whole answer", a.body, a.err)
			}
		})
	}

	t.Run("a member whose items break off breaks off the answer", func(t *testing.T) {
		defer func() {
			if got, _ := recover().(error); !errors.Is(got, http.ErrAbortHandler) {
				t.Errorf("recovered %v, want http.ErrAbortHandler", got)
			}
		}()
		stream(t, `{"kind":"PodList","metadata":{"continue":"next"},"items":[{"metadata":{"name":"p1"}},{"metad`)
		t.Error("no panic")
	})
}
