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
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A member watch, whose transport ends it at shutdown, and any other GET
// treat headers alike: hop-by-hop headers stay on their hop, both ways, and
// the caller's address is added to X-Forwarded-For.
func TestWatchHeadersAsOtherRequests(t *testing.T) {
	answer := func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-Member", "yes")
		h.Set("Connection", "X-Member-Hop")
		h.Set("X-Member-Hop", "dropped")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Audit-Id", "a-1")
		_, _ = io.WriteString(w, memberHello)
	}
	for _, query := range []string{"", "watch=true"} {
		t.Run("query="+query, func(t *testing.T) {
			if isMemberWatch(newProxyRequest(http.MethodGet, testCluster, "/api/v1/namespaces/dev/pods", query, nil, alice)) != (query != "") {
				t.Fatal("the request is not routed as the test expects")
			}
			// HTTP/1.1: over HTTP/2 the member could not send Connection at all.
			mem := newMember(t, answer, withHTTP2(false))
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			fe := f.newFrontend(t, testCluster, alice, nil)
			target := proxyPath(testCluster, "/api/v1/namespaces/dev/pods")
			if query != "" {
				target += "?" + query
			}

			resp, body := fe.do(t, http.MethodGet, target, http.Header{
				"Connection":      {"X-Caller-Hop"},
				"X-Caller-Hop":    {"dropped"},
				"Keep-Alive":      {"timeout=5"},
				"Te":              {"gzip"},
				"X-Forwarded-For": {"10.0.0.1"},
				"Accept":          {"application/json"},
				"User-Agent":      {"kubectl/v1.37.2"},
			}, "")

			if resp.StatusCode != http.StatusOK || string(body) != memberHello {
				t.Fatalf("answer = %d %q", resp.StatusCode, body)
			}
			seen := mem.only(t)
			if seen.RawQuery != query || seen.Host != mem.addr() {
				t.Errorf("the member got query %q and Host %q, want %q and %q", seen.RawQuery, seen.Host, query, mem.addr())
			}
			for _, name := range []string{"X-Caller-Hop", "Keep-Alive", "Te"} {
				if v, ok := seen.Header[name]; ok {
					t.Errorf("the member got the hop-by-hop header %s: %q", name, v)
				}
			}
			for name, want := range map[string]string{
				"Accept":          "application/json",
				"User-Agent":      "kubectl/v1.37.2",
				"X-Forwarded-For": "10.0.0.1, 127.0.0.1",
			} {
				if got := strings.Join(seen.Header.Values(name), ", "); got != want {
					t.Errorf("%s at the member = %q, want %q", name, got, want)
				}
			}
			if got := resp.Header.Get("X-Member"); got != "yes" {
				t.Errorf("X-Member in the answer = %q", got)
			}
			if got := resp.Header.Get("Audit-Id"); got != "a-1" {
				t.Errorf("Audit-Id in the answer = %q", got)
			}
			for _, name := range []string{"X-Member-Hop", "Keep-Alive"} {
				if v, ok := resp.Header[name]; ok {
					t.Errorf("the answer carries the member's hop-by-hop header %s: %q", name, v)
				}
			}
		})
	}
}

func TestWatchErrorAnswersReachTheCaller(t *testing.T) {
	for _, code := range []int{http.StatusForbidden, http.StatusNotFound, http.StatusGone, http.StatusTooManyRequests, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			body := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","status":"Failure","code":%d}`, code)
			mem := newMember(t, answerWith(code, http.Header{"Content-Type": {"application/json"}}, body))
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			fe := f.newFrontend(t, testCluster, alice, nil)

			resp, got := fe.do(t, http.MethodGet, proxyPath(testCluster, "/api/v1/pods")+"?watch=1", nil, "")

			if resp.StatusCode != code || string(got) != body {
				t.Errorf("answer = %d %q, want %d %q", resp.StatusCode, got, code, body)
			}
			if errs := fe.responderErrors(); len(errs) != 0 {
				t.Errorf("the member's own answer went through the error responder: %v", errs)
			}
		})
	}
}

// A watch the member breaks off must not look, to the caller, like a watch
// that ended: the caller would take the events it has for all there were.
func TestWatchBrokenByTheMemberIsBrokenForTheCaller(t *testing.T) {
	const event = `{"type":"ADDED","object":{}}` + "\n"
	breakOff := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, event)
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // a reset stream, or a closed connection
	}
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			mem := newMember(t, breakOff, withHTTP2(h2))
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			fe := f.newFrontend(t, testCluster, alice, nil)

			resp, err := (&http.Client{Timeout: waitTimeout}).Get(fe.srv.URL + proxyPath(testCluster, "/api/v1/pods") + "?watch=1")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if string(got) != event {
				t.Errorf("the caller got %q, want the event the member sent", got)
			}
			if err == nil {
				t.Error("the caller's watch ended cleanly; want an error, as the member broke it off")
			}
		})
	}
}
