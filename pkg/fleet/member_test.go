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
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"
)

// serverConn is a member behind a real HTTP server.
type serverConn struct {
	endpoint url.URL
	rt       http.RoundTripper
}

func (c serverConn) Endpoint() url.URL           { return c.endpoint }
func (c serverConn) AsCaller() http.RoundTripper { return c.rt }

// memberServers are members, each an HTTP server under /<name>, that answer
// with handle; they count the requests and the connections.
type memberServers struct {
	server *httptest.Server
	mu     sync.Mutex
	asked  map[string]int
	conns  int
}

func newMemberServers(t *testing.T, handle func(name string, w http.ResponseWriter, req *http.Request)) *memberServers {
	m := &memberServers{asked: map[string]int{}}
	m.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
		m.mu.Lock()
		m.asked[name]++
		m.mu.Unlock()
		handle(name, w, req)
	}))
	m.server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			m.mu.Lock()
			m.conns++
			m.mu.Unlock()
		}
	}
	m.server.Start()
	t.Cleanup(m.server.Close)
	return m
}

// read is a fleet read over the servers' members names, each asked over
// one shared transport, with a member timeout of timeout.
func (m *memberServers) read(t *testing.T, rawQuery string, names []string, timeout time.Duration) *read {
	r := newTestRead(t, nil, names, rawQuery, false)
	r.ask = nil
	r.fleet.memberTimeout = timeout
	base, err := url.Parse(m.server.URL)
	if err != nil {
		t.Fatal(err)
	}
	rt := m.server.Client().Transport
	r.reach = func(name string) (memberConn, error) {
		endpoint := *base
		endpoint.Path = "/" + name
		return serverConn{endpoint: endpoint, rt: rt}, nil
	}
	return r
}

func (m *memberServers) counts() (map[string]int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	asked := map[string]int{}
	for name, n := range m.asked {
		asked[name] = n
	}
	return asked, m.conns
}

// listWithWarnings lists, and returns the Warning headers the list added.
func listWithWarnings(t *testing.T, r *read, w http.ResponseWriter) []string {
	t.Helper()
	recorder := &warningRecorder{}
	r.req = r.req.WithContext(warning.WithWarningRecorder(r.req.Context(), recorder))
	if _, err := r.list(w); err != nil {
		t.Fatalf("the list failed: %v (warnings %q)", err, recorder.texts)
	}
	return recorder.texts
}

type warningRecorder struct {
	mu    sync.Mutex
	texts []string
}

func (w *warningRecorder) AddWarning(_, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.texts = append(w.texts, text)
}

// podList is the start of a member's PodList, up to its items.
const podListHead = `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[`

// expectAbort fails the test unless do panics with http.ErrAbortHandler.
func expectAbort(t *testing.T, do func()) {
	t.Helper()
	defer func() {
		if got, _ := recover().(error); !errors.Is(got, http.ErrAbortHandler) {
			t.Errorf("recovered %v, want http.ErrAbortHandler", got)
		}
	}()
	do()
	t.Error("no panic")
}

func TestMembersOverHTTP(t *testing.T) {
	t.Run("a member whose connection breaks within what is read whole fails alone, as unreachable", func(t *testing.T) {
		m := newMemberServers(t, func(name string, w http.ResponseWriter, _ *http.Request) {
			if name == "a" {
				// Promise more than is sent: the client sees an unexpected EOF.
				w.Header().Set("Content-Length", "100000")
				_, _ = w.Write([]byte(podListHead + `{"metadata":{"name":"p1"}}`))
				return
			}
			_, _ = w.Write([]byte(podListHead + `{"metadata":{"name":"q1"}}]}`))
		})
		r := m.read(t, "", []string{"a", "b"}, 5*time.Second)
		w := httptest.NewRecorder()
		warnings := listWithWarnings(t, r, w)
		if _, keys := decodePage(t, w); strings.Join(keys, " ") != "b/q1" {
			t.Errorf("the items: %v", keys)
		}
		if len(warnings) != 1 || !strings.HasPrefix(warnings[0], `cluster "a"`) || strings.Contains(warnings[0], "cannot read") {
			t.Errorf("warnings %q, want one that a's connection failed", warnings)
		}
		if len(r.failures) != 1 || reasonOf(r.failures[0].err) != "unreachable" {
			t.Errorf("failures %+v, want a unreachable", r.failures)
		}
	})

	t.Run("a member that stalls in the middle of its items is cut off at the member timeout", func(t *testing.T) {
		m := newMemberServers(t, func(_ string, w http.ResponseWriter, req *http.Request) {
			_, _ = w.Write([]byte(podListHead + manyItems(2*wholeBytes)))
			w.(http.Flusher).Flush()
			<-req.Context().Done()
		})
		r := m.read(t, "", []string{"a"}, 2*time.Second)
		expectAbort(t, func() { _, _ = r.list(httptest.NewRecorder()) })
		if len(r.failures) != 1 || !strings.Contains(r.failures[0].err.Error(), "sent nothing for 2s in the middle of its answer") {
			t.Errorf("failures %+v, want a's stall", r.failures)
		}
	})

	t.Run("a member that stalls within what is read whole times out alone", func(t *testing.T) {
		m := newMemberServers(t, func(name string, w http.ResponseWriter, req *http.Request) {
			if name == "a" {
				_, _ = w.Write([]byte(podListHead + `{"metadata":{"name":"p1"}}`))
				w.(http.Flusher).Flush()
				<-req.Context().Done()
				return
			}
			_, _ = w.Write([]byte(podListHead + `{"metadata":{"name":"q1"}}]}`))
		})
		r := m.read(t, "limit=10", []string{"a", "b"}, 2*time.Second)
		w := httptest.NewRecorder()
		warnings := listWithWarnings(t, r, w)
		if _, keys := decodePage(t, w); strings.Join(keys, " ") != "b/q1" {
			t.Errorf("the items: %v", keys)
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], `cluster "a" did not answer within 2s`) {
			t.Errorf("warnings %q, want a's timeout", warnings)
		}
	})

	t.Run("a client that goes away fails no member", func(t *testing.T) {
		m := newMemberServers(t, func(_ string, w http.ResponseWriter, req *http.Request) {
			_, _ = w.Write([]byte(podListHead + manyItems(2*wholeBytes)))
			w.(http.Flusher).Flush()
			<-req.Context().Done()
		})
		r := m.read(t, "", []string{"a"}, time.Minute)
		ctx, cancel := context.WithCancel(r.req.Context())
		defer cancel()
		r.req = r.req.WithContext(ctx)
		w := &cancellingWriter{ResponseRecorder: httptest.NewRecorder(), cancel: cancel}
		outcome, err := r.list(w)
		if outcome != outcomeAborted || err != nil {
			t.Errorf("outcome %q (%v), want %q", outcome, err, outcomeAborted)
		}
		if len(r.failures) != 0 {
			t.Errorf("failures %+v, want none", r.failures)
		}
	})

	t.Run("a client that goes away while a member is awaited fails no member", func(t *testing.T) {
		var cancel context.CancelFunc
		m := newMemberServers(t, func(_ string, w http.ResponseWriter, req *http.Request) {
			_, _ = w.Write([]byte(podListHead + manyItems(2*wholeBytes)))
			w.(http.Flusher).Flush()
			cancel()
			<-req.Context().Done()
		})
		r := m.read(t, "", []string{"a"}, time.Minute)
		ctx, c := context.WithCancel(r.req.Context())
		defer c()
		cancel = c
		r.req = r.req.WithContext(ctx)
		func() {
			// The answer breaks off, or has not begun when the client goes.
			defer func() {
				if got := recover(); got != nil {
					if err, ok := got.(error); !ok || !errors.Is(err, http.ErrAbortHandler) {
						t.Errorf("recovered %v", got)
					}
				}
			}()
			_, _ = r.list(httptest.NewRecorder())
		}()
		if len(r.failures) != 0 {
			t.Errorf("failures %+v, want none", r.failures)
		}
	})

	later := "limit=10&continue=" + url.QueryEscape(EncodeContinue(&Continue{Cluster: "a", Token: "a-token", Versions: Versions{"a": "1", "b": "2"}}))
	for name, query := range map[string]string{"a page": "limit=10", "a later page": later, "one LIST": ""} {
		t.Run(name+": a client gone before the members answer gets no answer, and fails no member", func(t *testing.T) {
			m := newMemberServers(t, func(_ string, w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(podListHead + `]}`))
			})
			r := m.read(t, query, []string{"a", "b"}, time.Minute)
			ctx, cancel := context.WithCancel(r.req.Context())
			cancel()
			r.req = r.req.WithContext(ctx)
			w := httptest.NewRecorder()
			outcome, err := r.list(w)
			if outcome != outcomeAborted || err != nil || w.Body.Len() != 0 {
				t.Errorf("outcome %q (%v), %q written; want %q, nothing", outcome, err, w.Body.String(), outcomeAborted)
			}
			if len(r.failures) != 0 {
				t.Errorf("failures %+v, want none", r.failures)
			}
		})
	}

	t.Run("a get whose client has gone gets no answer, and fails no member", func(t *testing.T) {
		m := newMemberServers(t, func(_ string, w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web"}}`))
		})
		r := m.read(t, "", []string{"a", "b"}, time.Minute)
		ctx, cancel := context.WithCancel(r.req.Context())
		cancel()
		r.req = r.req.WithContext(ctx)
		w := httptest.NewRecorder()
		outcome, err := r.get(w, &request.RequestInfo{Verb: "get", Resource: "pods", Namespace: "ns", Name: "web"})
		if outcome != outcomeAborted || err != nil || w.Body.Len() != 0 {
			t.Errorf("outcome %q (%v), %q written; want %q, nothing", outcome, err, w.Body.String(), outcomeAborted)
		}
		if len(r.failures) != 0 {
			t.Errorf("failures %+v, want none", r.failures)
		}
	})

	// b's items are more than is read whole, and more follows them: in one
	// LIST they stream, and the rest of b's answer is read to its end, so
	// that its connection carries the next request.
	many := manyItems(2 * wholeBytes)
	after := `,"padding":"` + strings.Repeat("x", 4*wholeBytes) + `"}`
	for name, query := range map[string]string{"a page": "limit=5000", "one LIST": ""} {
		t.Run(name+": members are each asked once, over connections reused", func(t *testing.T) {
			m := newMemberServers(t, func(name string, w http.ResponseWriter, _ *http.Request) {
				if name == "b" {
					_, _ = fmt.Fprint(w, podListHead+many+`]`+after)
					return
				}
				_, _ = fmt.Fprintf(w, podListHead+`{"metadata":{"name":"%s1"}},{"metadata":{"name":"%s2"}}]}`, name, name)
			})
			for range 3 {
				r := m.read(t, query, []string{"a", "b", "c"}, 5*time.Second)
				r.fleet.membersInFlight = 1
				w := httptest.NewRecorder()
				if warnings := listWithWarnings(t, r, w); len(warnings) != 0 {
					t.Errorf("warnings %q", warnings)
				}
				_, keys := decodePage(t, w)
				if n := strings.Count(many, `"name"`); len(keys) != 4+n || keys[0] != "a/a1" || keys[2] != "b/p0" || keys[len(keys)-1] != "c/c2" {
					t.Errorf("%d items, want a's 2, b's %d, c's 2, in order", len(keys), n)
				}
			}
			asked, conns := m.counts()
			if asked["a"] != 3 || asked["b"] != 3 || asked["c"] != 3 {
				t.Errorf("asked %v, want each member three times: once a list", asked)
			}
			// One LIST holds b's answer open while c's is read.
			if conns > 2 {
				t.Errorf("%d connections for three lists one after another, want at most 2", conns)
			}
		})
	}
}

// cancellingWriter is a client that goes away once the answer begins.
type cancellingWriter struct {
	*httptest.ResponseRecorder
	cancel func()
}

func (w *cancellingWriter) Write(b []byte) (int, error) {
	w.cancel()
	return 0, context.Canceled
}
