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
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
)

func TestRequestPassesThroughUnchanged(t *testing.T) {
	const (
		query = "labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&limit=5&x=1&x=2&fieldManager=kubectl-client-side-apply"
		body  = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}`
	)
	answer := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Member-Method", r.Method)
		w.Header().Set("Content-Type", "application/json")
		code := http.StatusOK
		if r.Method == http.MethodPost {
			code = http.StatusCreated
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"answer":"`+r.Method+`"}`)
	}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions}
	paths := []string{"/api/v1/namespaces/dev/configmaps/c", "/api/v1/namespaces/dev/configmaps/", "/apis/apps/v1/"}

	for _, method := range methods {
		for _, path := range paths {
			t.Run(method+" "+path, func(t *testing.T) {
				mem := newMember(t, answer)
				f := newFixture(t)
				f.addMember(t, testCluster, mem, "")
				sent := body
				if method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions {
					sent = ""
				}
				req := newProxyRequest(method, testCluster, path, query, strings.NewReader(sent), alice)
				req.Header.Set("Content-Type", "application/merge-patch+json")
				req.Header.Set("Accept", "application/json;as=Table;g=meta.k8s.io;v=v1")

				rec, responder := f.serve(t, testCluster, path, req)

				responder.noErrors(t)
				seen := mem.only(t)
				if seen.Method != method || seen.Path != path || seen.RawQuery != query || seen.Body != sent {
					t.Errorf("the member got %s %s ? %s with body %q;\nwant %s %s ? %s with body %q",
						seen.Method, seen.Path, seen.RawQuery, seen.Body, method, path, query, sent)
				}
				if got := seen.Header.Get("Content-Type"); got != "application/merge-patch+json" {
					t.Errorf("Content-Type at the member = %q", got)
				}
				if got := seen.Header.Get("Accept"); got != "application/json;as=Table;g=meta.k8s.io;v=v1" {
					t.Errorf("Accept at the member = %q", got)
				}
				if seen.Host != mem.addr() {
					t.Errorf("Host at the member = %q, want the endpoint's %q", seen.Host, mem.addr())
				}
				wantCode, wantBody := http.StatusOK, `{"answer":"`+method+`"}`
				if method == http.MethodPost {
					wantCode = http.StatusCreated
				}
				if method == http.MethodHead {
					wantBody = ""
				}
				if rec.Code != wantCode || rec.Body.String() != wantBody || rec.Header().Get("X-Member-Method") != method {
					t.Errorf("answer = %d %q (X-Member-Method %q), want %d %q", rec.Code, rec.Body.String(), rec.Header().Get("X-Member-Method"), wantCode, wantBody)
				}
			})
		}
	}
}

func TestEndpointPathPrefixIsKept(t *testing.T) {
	cases := []struct {
		name, prefix, path, want string
	}{
		{"no prefix", "", "/api/v1/pods", "/api/v1/pods"},
		{"no prefix, empty path", "", "", "/"},
		{"no prefix, root", "", "/", "/"},
		{"prefix", "/prefix", "/api/v1/pods", "/prefix/api/v1/pods"},
		{"prefix with a trailing slash", "/prefix/", "/api/v1/pods", "/prefix/api/v1/pods"},
		{"prefix, path without a leading slash", "/prefix", "api/v1/pods", "/prefix/api/v1/pods"},
		{"prefix, trailing slash kept", "/gw/clusters/a", "/apis/", "/gw/clusters/a/apis/"},
		{"prefix, empty path", "/prefix", "", "/prefix"},
		{"prefix, root", "/prefix", "/", "/prefix/"},
		{"dots inside a segment are not dot segments", "/prefix", "/api/v1/namespaces/dev/configmaps/a..b", "/prefix/api/v1/namespaces/dev/configmaps/a..b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMember(t, nil)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, tc.prefix)

			rec, responder := f.serve(t, testCluster, tc.path, newProxyRequest(http.MethodGet, testCluster, tc.path, "limit=1", nil, alice))

			responder.noErrors(t)
			if rec.Code != http.StatusOK {
				t.Fatalf("code = %d %q", rec.Code, rec.Body.String())
			}
			if seen := mem.only(t); seen.Path != tc.want || seen.RawQuery != "limit=1" {
				t.Errorf("the member got %s?%s, want %s?limit=1", seen.Path, seen.RawQuery, tc.want)
			}
		})
	}

	t.Run("upgrade", func(t *testing.T) {
		mem := newMember(t, nil)
		f := newFixture(t)
		f.addMember(t, testCluster, mem, "/prefix")
		fe := f.newFrontend(t, testCluster, alice, nil)

		fe.roundTrip(t, testCluster, upgradeMode, nil)

		if seen := mem.only(t); seen.Path != "/prefix"+execPath || seen.RawQuery != "command=ls&stdout=true" {
			t.Errorf("the member got %s?%s, want %s?command=ls&stdout=true", seen.Path, seen.RawQuery, "/prefix"+execPath)
		}
	})
}

func TestDotSegmentsAreRefused(t *testing.T) {
	for _, path := range []string{"/..", "/../clusters/b/api", "/api/v1/../../b", "/api/./v1/pods", ".", "..", "/api/v1/pods/.."} {
		t.Run(path, func(t *testing.T) {
			mem := newMember(t, nil)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "/gw/clusters/a")

			_, err := f.connect(context.Background(), testCluster, path, &recordingResponder{})

			if err == nil {
				t.Fatal("Connect accepted the path")
			}
			checkStatusMessage(t, statusOf(t, err), http.StatusBadRequest, metav1.StatusReasonBadRequest, ". or ..")
			if n := len(mem.requests()); n != 0 {
				t.Errorf("the member received %d requests", n)
			}
		})
	}
}

func TestRedirectsAreNotFollowedNorPassedOn(t *testing.T) {
	const location = "https://elsewhere.example.com/steal?token=1"
	for _, code := range []int{http.StatusMultipleChoices, http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, m := range roundTripModes {
			t.Run(fmt.Sprintf("%d/%s", code, m), func(t *testing.T) {
				mem := newMember(t, answerWith(code, http.Header{"Location": {location}}, "moved"))
				f := newFixture(t)
				f.addMember(t, testCluster, mem, "")
				req, path := newModeRequest(m, testCluster)

				rec, _ := f.serve(t, testCluster, path, req)

				if rec.Code != http.StatusBadGateway {
					t.Fatalf("code = %d %q, want 502", rec.Code, rec.Body.String())
				}
				status := decodeStatus(t, rec.Header().Get("Content-Type"), rec.Body.Bytes())
				checkStatus(t, status, http.StatusBadGateway, "", testCluster)
				if got := rec.Header().Get("Location"); got != "" {
					t.Errorf("Location %q was passed on", got)
				}
				if strings.Contains(rec.Body.String(), "elsewhere.example.com") {
					t.Errorf("the redirect target leaked into the answer: %q", rec.Body.String())
				}
				mem.only(t) // contacted once, not followed
			})
		}
	}
}

// 304 Not Modified is a 3xx but not a redirect: members answer it to
// conditional requests (kube-openapi serves /openapi/v2 and /openapi/v3 with
// ETags, and client-go's disk cache, which kubectl uses, sends If-None-Match
// and counts on 304). It must reach the caller as it is, not as a 502.
func TestNotModifiedIsPassedOn(t *testing.T) {
	mem := newMember(t, answerWith(http.StatusNotModified, http.Header{"Etag": {`"abc"`}}, ""))
	f := newFixture(t)
	f.addMember(t, testCluster, mem, "")
	req := newProxyRequest(http.MethodGet, testCluster, "/openapi/v3/api/v1", "hash=abc", nil, alice)
	req.Header.Set("If-None-Match", `"abc"`)

	rec, responder := f.serve(t, testCluster, "/openapi/v3/api/v1", req)

	responder.noErrors(t)
	if rec.Code != http.StatusNotModified || rec.Header().Get("Etag") != `"abc"` {
		t.Errorf("answer = %d (ETag %q) %q, want 304 with the member's ETag", rec.Code, rec.Header().Get("Etag"), rec.Body.String())
	}
	if got := mem.only(t).Header.Get("If-None-Match"); got != `"abc"` {
		t.Errorf("If-None-Match at the member = %q", got)
	}
}

func TestMemberErrorsReachTheCallerUnchanged(t *testing.T) {
	statusBody := func(code int, reason string) string {
		return fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"member says %d","reason":%q,"code":%d}`, code, reason, code) + "\n"
	}
	cases := []struct {
		code   int
		reason string
	}{
		{http.StatusForbidden, "Forbidden"},
		{http.StatusNotFound, "NotFound"},
		{http.StatusConflict, "AlreadyExists"},
		{http.StatusUnprocessableEntity, "Invalid"},
		{http.StatusTooManyRequests, "TooManyRequests"},
		{http.StatusInternalServerError, "InternalError"},
	}
	for _, tc := range cases {
		body := statusBody(tc.code, tc.reason)
		answer := answerWith(tc.code, http.Header{"Content-Type": {"application/json"}, "Retry-After": {"7"}}, body)
		for _, m := range modes {
			t.Run(fmt.Sprintf("%d/%s", tc.code, m), func(t *testing.T) {
				mem := newMember(t, answer)
				f := newFixture(t)
				f.addMember(t, testCluster, mem, "")
				fe := f.newFrontend(t, testCluster, alice, nil)

				var (
					resp *http.Response
					got  []byte
				)
				if m == plainMode {
					resp, got = fe.do(t, http.MethodPost, proxyPath(testCluster, "/api/v1/namespaces/dev/configmaps"), nil, "{}")
				} else {
					resp, _ = fe.upgrade(t, proxyPath(testCluster, execPath)+"?command=ls", nil)
					got = readBody(t, resp)
				}

				if resp.StatusCode != tc.code || string(got) != body {
					t.Errorf("answer = %d %q, want %d %q", resp.StatusCode, got, tc.code, body)
				}
				if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Retry-After") != "7" {
					t.Errorf("answer headers = %v", resp.Header)
				}
				if errs := fe.responderErrors(); len(errs) != 0 {
					t.Errorf("the responder got %v", errs)
				}
				mem.only(t)
			})
		}
	}
}

// unreachableEndpoint is an endpoint nobody answers at: a closed port, or a
// listener that never accepts (TCP connects, TLS never completes).
func unreachableEndpoint(t *testing.T, accepting bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if accepting {
		// Closing it at the end resets whatever hangs on it.
		t.Cleanup(func() { _ = ln.Close() })
	} else {
		_ = ln.Close()
	}
	return "https://" + ln.Addr().String()
}

func TestUnreachableMember(t *testing.T) {
	for _, tc := range []struct {
		name      string
		listening bool
	}{{"closed port", false}, {"listener that never answers", true}} {
		for _, m := range roundTripModes {
			t.Run(tc.name+"/"+string(m), func(t *testing.T) {
				f := newFixture(t)
				endpoint := unreachableEndpoint(t, tc.listening)
				f.putSecret(t, newSecret(secretName(testCluster), map[string][]byte{"token": []byte(testToken)}))
				cl := newCluster(testCluster, endpoint)
				cl.Spec.InsecureSkipTLSVerify = true
				f.putCluster(t, cl)
				status, rec := f.failOnce(t, m)
				checkStatus(t, status, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster, endpoint)
				if rec.Code != http.StatusServiceUnavailable {
					t.Errorf("code = %d, want 503", rec.Code)
				}
				// The caller already waited for the dial timeout: no
				// Retry-After for clients to wait through again.
				if status.Details != nil && status.Details.RetryAfterSeconds != 0 {
					t.Errorf("Retry-After after a failed dial: %+v", status.Details)
				}
			})
		}
	}
}

func TestUnknownClusterAndUnsyncedCaches(t *testing.T) {
	t.Run("unknown cluster", func(t *testing.T) {
		f := newFixture(t)
		_, err := f.connect(context.Background(), "nope", "/api", &recordingResponder{})
		status := statusOf(t, err)
		checkStatusMessage(t, status, http.StatusNotFound, metav1.StatusReasonNotFound, `"nope"`)
		if status.Details == nil || status.Details.Name != "nope" || status.Details.Kind != "clusters" {
			t.Errorf("details = %+v, want clusters nope", status.Details)
		}
	})
	t.Run("caches not synced", func(t *testing.T) {
		mem := newMember(t, nil)
		f := newFixture(t)
		f.addMember(t, testCluster, mem, "")
		f.synced.Store(false)
		_, err := f.connect(context.Background(), testCluster, "/api", &recordingResponder{})
		status := statusOf(t, err)
		checkStatusMessage(t, status, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "not synced")
		if status.Details == nil || status.Details.Name != testCluster || status.Details.RetryAfterSeconds <= 0 {
			t.Errorf("details = %+v, want the cluster and a Retry-After", status.Details)
		}
		f.synced.Store(true)
		if _, err := f.connect(context.Background(), testCluster, "/api", &recordingResponder{}); err != nil {
			t.Errorf("once synced, Connect = %v", err)
		}
	})
	t.Run("no hub, so no Secrets", func(t *testing.T) {
		mem := newMember(t, nil)
		f := newFixture(t)
		f.addMember(t, testCluster, mem, "")
		p := NewProxier(Config{Clusters: f.proxier.clusters, Namespace: testNamespace, Synced: func() bool { return true }, Transports: f.transports})
		_, err := p.Connect(context.Background(), testCluster, "/api", &recordingResponder{})
		checkStatus(t, statusOf(t, err), http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster)
	})
}

func TestConcurrentCallersKeepTheirIdentity(t *testing.T) {
	const callers = 64
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			mem := newMember(t, answerEchoUser, withHTTP2(h2))
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")

			var wg sync.WaitGroup
			failures := make(chan string, callers)
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					name := fmt.Sprintf("user-%02d", i)
					req := newProxyRequest(http.MethodGet, testCluster, "/api/v1/pods", "", nil,
						&user.DefaultInfo{Name: name, Groups: []string{"team-" + name}})
					rec := httptest.NewRecorder()
					handler, err := f.connect(req.Context(), testCluster, "/api/v1/pods", &recordingResponder{w: rec})
					if err != nil {
						failures <- fmt.Sprintf("%s: Connect: %v", name, err)
						return
					}
					handler.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK || rec.Body.String() != name {
						failures <- fmt.Sprintf("%s got %d %q", name, rec.Code, rec.Body.String())
					}
				}()
			}
			wg.Wait()
			close(failures)
			for failure := range failures {
				t.Error(failure)
			}
			seen := mem.requests()
			if len(seen) != callers {
				t.Fatalf("the member received %d requests, want %d", len(seen), callers)
			}
			for _, s := range seen {
				name := s.Header.Get("Impersonate-User")
				if groups := s.Header.Values("Impersonate-Group"); len(groups) != 1 || groups[0] != "team-"+name {
					t.Errorf("user %s arrived with groups %q", name, groups)
				}
			}
			if b := f.transports.Builds(); b != 1 {
				t.Errorf("Builds() = %d, want 1", b)
			}
		})
	}
}

func TestStreamingAnswersAreFlushedAsTheyCome(t *testing.T) {
	const first, second = `{"type":"ADDED"}` + "\n", `{"type":"DELETED"}` + "\n"
	for _, h2 := range []bool{false, true} {
		// A watch is chunked; a member may also announce the length of a
		// body it then writes slowly.
		for _, knownLength := range []bool{false, true} {
			t.Run(fmt.Sprintf("http2=%v/knownLength=%v", h2, knownLength), func(t *testing.T) {
				release := make(chan struct{})
				var releaseOnce sync.Once
				defer releaseOnce.Do(func() { close(release) })
				mem := newMember(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					if knownLength {
						w.Header().Set("Content-Length", fmt.Sprint(len(first)+len(second)))
					}
					_, _ = io.WriteString(w, first)
					_ = http.NewResponseController(w).Flush()
					select {
					case <-release:
					case <-r.Context().Done():
						return
					case <-time.After(2 * waitTimeout):
					}
					_, _ = io.WriteString(w, second)
				}, withHTTP2(h2))
				f := newFixture(t)
				f.addMember(t, testCluster, mem, "")
				fe := f.newFrontend(t, testCluster, alice, nil)

				// The answer's head and first line must both come while the
				// member holds the rest back.
				type firstLine struct {
					resp   *http.Response
					reader *bufio.Reader
					line   string
					err    error
				}
				got := make(chan firstLine, 1)
				go func() {
					resp, err := (&http.Client{Timeout: 3 * waitTimeout}).Get(fe.srv.URL + proxyPath(testCluster, "/api/v1/pods") + "?watch=true")
					if err != nil {
						got <- firstLine{err: err}
						return
					}
					reader := bufio.NewReader(resp.Body)
					line, err := reader.ReadString('\n')
					got <- firstLine{resp: resp, reader: reader, line: line, err: err}
				}()
				var reader *bufio.Reader
				select {
				case g := <-got:
					if g.err != nil {
						t.Fatal(g.err)
					}
					defer g.resp.Body.Close()
					if g.line != first {
						t.Fatalf("first line = %q, want %q", g.line, first)
					}
					reader = g.reader
				case <-time.After(waitTimeout):
					t.Fatal("the first event did not arrive while the member held the answer open")
				}
				releaseOnce.Do(func() { close(release) })
				rest, err := io.ReadAll(reader)
				if err != nil || string(rest) != second {
					t.Errorf("rest = %q, %v; want %q", rest, err, second)
				}
				if got := mem.only(t).RawQuery; got != "watch=true" {
					t.Errorf("query at the member = %q", got)
				}
			})
		}
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, testCluster, mem, "")
	fe := f.newFrontend(t, testCluster, alice, nil)
	header := http.Header{
		"Upgrade":                {"websocket"},
		"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Protocol": {"v5.channel.k8s.io", "v4.channel.k8s.io"},
		"Authorization":          {"Bearer caller-token"},
	}

	resp, conn := fe.upgrade(t, proxyPath(testCluster, execPath)+"?command=sh&stdin=true&tty=true", header)

	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("answer = %d (Upgrade %q), want 101 websocket; responder errors %v", resp.StatusCode, resp.Header.Get("Upgrade"), fe.responderErrors())
	}
	conn.expectEcho(t)
	seen := mem.only(t)
	for _, name := range []string{"Upgrade", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol"} {
		if got := seen.Header.Values(name); !slices.Equal(got, header[name]) {
			t.Errorf("%s at the member = %q, want %q", name, got, header[name])
		}
	}
	if seen.RawQuery != "command=sh&stdin=true&tty=true" {
		t.Errorf("query at the member = %q", seen.RawQuery)
	}
	checkIdentity(t, seen, withToken(aliceAtTheMember(), testToken))
}

func TestMemberClosingTheConnection(t *testing.T) {
	hangUp := func(w http.ResponseWriter, _ *http.Request) {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	}
	for _, m := range roundTripModes {
		t.Run(string(m), func(t *testing.T) {
			mem := newMember(t, hangUp)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			req, path := newModeRequest(m, testCluster)

			rec, responder := f.serve(t, testCluster, path, req)

			if rec.Code != http.StatusServiceUnavailable {
				t.Errorf("code = %d %q, want 503", rec.Code, rec.Body.String())
			}
			checkStatus(t, statusOf(t, responder.onlyError(t)), http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster, mem.srv.URL)
		})
	}
}

func TestTLSServerName(t *testing.T) {
	// httptest's certificate is for 127.0.0.1, ::1, example.com and *.example.com.
	cases := []struct {
		serverName string
		ok         bool
	}{{"", true}, {"example.com", true}, {"api.example.com", true}, {"member.invalid", false}}
	for _, tc := range cases {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%q/%s", tc.serverName, m), func(t *testing.T) {
				mem := newMember(t, nil)
				f := newFixture(t)
				f.addMember(t, testCluster, mem, "")
				cl := f.cluster(t, testCluster)
				cl.Spec.TLSServerName = tc.serverName
				f.putCluster(t, cl)
				fe := f.newFrontend(t, testCluster, alice, nil)

				if tc.ok {
					fe.roundTrip(t, testCluster, m, nil)
					mem.only(t)
					return
				}
				var code int
				var body []byte
				if m == plainMode {
					var resp *http.Response
					resp, body = fe.do(t, http.MethodGet, proxyPath(testCluster, "/api"), nil, "")
					code = resp.StatusCode
				} else {
					resp, _ := fe.upgrade(t, proxyPath(testCluster, execPath), nil)
					code, body = resp.StatusCode, readBody(t, resp)
				}
				if code != http.StatusServiceUnavailable {
					t.Fatalf("answer = %d %q, want 503", code, body)
				}
				status := decodeStatus(t, "application/json", body)
				checkStatus(t, status, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster, "certificate")
				if n := len(mem.requests()); n != 0 {
					t.Errorf("the member received %d requests over an unverified connection", n)
				}
			})
		}
	}
}

func TestProxyURL(t *testing.T) {
	proxies := []struct {
		name  string
		start func(*testing.T) *tunnelProxy
		url   func(*tunnelProxy) string
	}{
		{"http CONNECT", func(t *testing.T) *tunnelProxy { return newConnectProxy(t, false) }, func(p *tunnelProxy) string { return "http://" + p.addr() }},
		{"socks5", newSOCKS5Proxy, func(p *tunnelProxy) string { return "socks5://" + p.addr() }},
	}
	for _, px := range proxies {
		t.Run(px.name, func(t *testing.T) {
			mem := newMember(t, nil)
			p := px.start(t)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			cl := f.cluster(t, testCluster)
			cl.Spec.ProxyURL = px.url(p)
			f.putCluster(t, cl)
			fe := f.newFrontend(t, testCluster, alice, nil)

			for i, m := range modes {
				fe.roundTrip(t, testCluster, m, nil)
				tunnels := p.tunnels()
				if len(tunnels) != i+1 || tunnels[i] != mem.addr() {
					t.Fatalf("after the %s request the proxy tunnelled to %q, want %d tunnels to %s", m, tunnels, i+1, mem.addr())
				}
			}
			if got := len(mem.requests()); got != len(modes) {
				t.Errorf("the member received %d requests, want %d", got, len(modes))
			}
			if n := mem.newConns.Load(); n != int64(len(modes)) {
				t.Errorf("the member saw %d connections, want %d, all through the proxy", n, len(modes))
			}
		})
	}

	t.Run("proxy refuses", func(t *testing.T) {
		mem := newMember(t, nil)
		p := newConnectProxy(t, true)
		f := newFixture(t)
		f.addMember(t, testCluster, mem, "")
		cl := f.cluster(t, testCluster)
		cl.Spec.ProxyURL = "http://" + p.addr()
		f.putCluster(t, cl)

		rec, responder := f.serve(t, testCluster, "/api", newProxyRequest(http.MethodGet, testCluster, "/api", "", nil, alice))

		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("code = %d, want 503", rec.Code)
		}
		checkStatus(t, statusOf(t, responder.onlyError(t)), http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, testCluster, "403")
		if n := len(mem.requests()); n != 0 {
			t.Errorf("the member received %d requests", n)
		}
	})
}

// Switchboard never asks the member for gzip on the caller's behalf (which
// would make it unpack every large answer); what the caller asks for passes
// through, and a gzipped answer reaches the caller as the member sent it.
func TestAcceptEncodingPassesThrough(t *testing.T) {
	gzipped := []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}
	answer := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(gzipped)
			return
		}
		_, _ = io.WriteString(w, "plain")
	}
	for _, tc := range []struct {
		name, acceptEncoding, wantBody, wantEncoding string
	}{
		{"caller asks for nothing", "", "plain", ""},
		{"caller asks for gzip", "gzip", string(gzipped), "gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMember(t, answer)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			req := newProxyRequest(http.MethodGet, testCluster, "/api/v1/pods", "", nil, alice)
			if tc.acceptEncoding != "" {
				req.Header.Set("Accept-Encoding", tc.acceptEncoding)
			}
			rec, responder := f.serve(t, testCluster, "/api/v1/pods", req)
			responder.noErrors(t)
			if got := mem.only(t).Header.Get("Accept-Encoding"); got != tc.acceptEncoding {
				t.Errorf("the member was asked for Accept-Encoding %q, want %q", got, tc.acceptEncoding)
			}
			if rec.Body.String() != tc.wantBody || rec.Header().Get("Content-Encoding") != tc.wantEncoding {
				t.Errorf("caller got %q (Content-Encoding %q), want %q (%q)", rec.Body.String(), rec.Header().Get("Content-Encoding"), tc.wantBody, tc.wantEncoding)
			}
		})
	}
}
