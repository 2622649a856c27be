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
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// fakeHealth is a MemberHealth whose answers the test sets.
type fakeHealth struct {
	mu    sync.Mutex
	down  map[string]fakeProbe
	soon  []string
	asked []string
}

type fakeProbe struct {
	message string
	at      time.Time
}

func newFakeHealth() *fakeHealth { return &fakeHealth{down: map[string]fakeProbe{}} }

func (h *fakeHealth) setDown(cluster, message string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down[cluster] = fakeProbe{message: message, at: at}
}

func (h *fakeHealth) setUp(cluster string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.down, cluster)
}

func (h *fakeHealth) Unreachable(cluster string) (string, time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked = append(h.asked, cluster)
	p, ok := h.down[cluster]
	return p.message, p.at, ok
}

func (h *fakeHealth) ProbeSoon(cluster string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.soon = append(h.soon, cluster)
}

func (h *fakeHealth) probesAsked() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.soon...)
}

var _ MemberHealth = &fakeHealth{}

// withInfo gives req the user alice and its hub RequestInfo, as the filters do.
func withInfo(t *testing.T, req *http.Request) *http.Request {
	t.Helper()
	info, err := requestInfoFactory.NewRequestInfo(req)
	if err != nil {
		t.Fatalf("NewRequestInfo(%s): %v", req.URL, err)
	}
	ctx := request.WithRequestInfo(request.WithUser(req.Context(), alice), info)
	return req.WithContext(ctx)
}

func TestFastFailureOnADownMember(t *testing.T) {
	const name = "health-down"
	const probeMessage = "the member cannot be reached: dial tcp 10.9.8.7:6443: connect: connection refused"
	probedAt := time.Date(2031, 5, 6, 7, 8, 9, 0, time.FixedZone("CEST", 2*3600))

	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	health := newFakeHealth()
	health.setDown(name, probeMessage, probedAt)
	f.proxier.health = health
	metrics := metricsFrom(t, name)

	req := withInfo(t, newProxyRequest(http.MethodGet, name, "/api/v1/pods", "", nil, alice))
	var handler http.Handler
	var err error
	within(t, "Connect to a down member", func() {
		handler, err = f.connect(req.Context(), name, "/api/v1/pods", &recordingResponder{w: nil})
	})

	if handler != nil || err == nil {
		t.Fatalf("Connect to a down member = %v, %v; want an error", handler, err)
	}
	status := statusOf(t, err)
	checkStatus(t, status, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, name,
		"unreachable", probeMessage, "2031-05-06T05:08:09Z")
	// Waiting a second does not bring the member back; client-go would
	// retry ten times and show the same error ten seconds later.
	if status.Details.RetryAfterSeconds != 0 {
		t.Errorf("RetryAfterSeconds = %d, want 0", status.Details.RetryAfterSeconds)
	}
	if got := health.probesAsked(); len(got) != 1 || got[0] != name {
		t.Errorf("ProbeSoon calls = %v, want [%s]", got, name)
	}
	// Nothing reached the member, not even a connection, and no transport
	// was built.
	if n := len(mem.requests()); n != 0 {
		t.Errorf("the member received %d requests", n)
	}
	if n := mem.newConns.Load(); n != 0 {
		t.Errorf("the member saw %d connections", n)
	}
	if b := f.transports.Builds(); b != 0 {
		t.Errorf("Builds() = %d, want 0", b)
	}
	if got := metrics.upstreamErrors("down"); got != 1 {
		t.Errorf("upstream_errors_total{reason=down} rose by %v, want 1", got)
	}
	// The hub path clusters/<name>/proxy/api/v1/pods is a get of the
	// proxy subresource.
	if got := metrics.requests("get", "503"); got != 1 {
		t.Errorf("requests_total{verb=get,code=503} rose by %v, want 1", got)
	}

	// Every refused request asks for a probe; limiting them is the prober's job.
	if _, err := f.connect(req.Context(), name, "/api/v1/pods", &recordingResponder{}); err == nil {
		t.Fatal("the second Connect passed")
	}
	if got := health.probesAsked(); len(got) != 2 {
		t.Errorf("ProbeSoon calls after a second request = %v, want two", got)
	}

	// Once a probe clears it, requests pass again.
	health.setUp(name)
	rec, responder := f.serve(t, name, "/api/v1/pods", newProxyRequest(http.MethodGet, name, "/api/v1/pods", "", nil, alice))
	responder.noErrors(t)
	if rec.Code != http.StatusOK || rec.Body.String() != memberHello {
		t.Errorf("answer after the member came back = %d %q", rec.Code, rec.Body.String())
	}
	if n := len(mem.requests()); n != 1 {
		t.Errorf("the member received %d requests, want 1", n)
	}
	if got := health.probesAsked(); len(got) != 2 {
		t.Errorf("a request to a healthy member asked for a probe: %v", got)
	}
}

func TestHealthyMemberIsNotFailedFast(t *testing.T) {
	const name = "health-up"
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	health := newFakeHealth()
	// Another member is down; this one is not.
	health.setDown("health-other", "the member cannot be reached", time.Now())
	f.proxier.health = health

	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			fe := f.newFrontend(t, name, alice, nil)
			fe.roundTrip(t, name, m, nil)
		})
	}
	if got := health.probesAsked(); len(got) != 0 {
		t.Errorf("ProbeSoon calls = %v, want none", got)
	}
	health.mu.Lock()
	asked := append([]string(nil), health.asked...)
	health.mu.Unlock()
	for _, a := range asked {
		if a != name {
			t.Errorf("Unreachable was asked about %q", a)
		}
	}
	if len(asked) == 0 {
		t.Error("the proxy never asked whether the member is down")
	}
}

func TestDownMemberAlsoFailsUpgradesFast(t *testing.T) {
	const name = "health-down-upgrade"
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	health := newFakeHealth()
	health.setDown(name, "the member did not answer in time", time.Now())
	f.proxier.health = health
	fe := f.newFrontend(t, name, alice, nil)

	resp, _ := fe.upgrade(t, proxyPath(name, execPath)+"?command=ls", nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("answer = %d %q, want 503", resp.StatusCode, body)
	}
	status := decodeStatus(t, resp.Header.Get("Content-Type"), body)
	checkStatus(t, status, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, name, "did not answer in time")
	if got := resp.Header.Get("Retry-After"); got != "" || status.Details.RetryAfterSeconds != 0 {
		t.Errorf("Retry-After = %q, RetryAfterSeconds = %d; want neither", got, status.Details.RetryAfterSeconds)
	}
	if n := mem.newConns.Load(); n != 0 {
		t.Errorf("the member saw %d connections", n)
	}
}

// client-go (and so kubectl) retries a 5xx that carries Retry-After up to
// ten times. A member known to be down must fail a client at once, with
// switchboard's message; caches that are still syncing are worth a retry.
func TestClientGoRetriesOnlyWhatARetryCanMend(t *testing.T) {
	const name = "health-client-go"
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, name, mem, "")
	health := newFakeHealth()
	f.proxier.health = health
	fe := f.newFrontend(t, name, alice, nil)
	client, err := rest.RESTClientFor(&rest.Config{
		Host:    fe.srv.URL,
		APIPath: proxyPath(name, "/api"),
		ContentConfig: rest.ContentConfig{
			GroupVersion:         &corev1.SchemeGroupVersion,
			NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	attempts := func() int { return len(fe.responderErrors()) }

	health.setDown(name, "the member did not answer in time", time.Now())
	err = client.Get().Resource("pods").Namespace("dev").Do(context.Background()).Error()
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), `cluster "`+name+`" is unreachable: its last probe`) {
		t.Errorf("GET through client-go of a down member = %v, want switchboard's 503", err)
	}
	if n := attempts(); n != 1 {
		t.Errorf("client-go sent %d requests for a member known to be down, want 1 (no retries)", n)
	}

	// The same client does retry the answer of a switchboard whose caches
	// are not synced yet; two retries keep the test short.
	health.setUp(name)
	f.synced.Store(false)
	before := attempts()
	err = client.Get().Resource("pods").Namespace("dev").MaxRetries(2).Do(context.Background()).Error()
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "not synced") {
		t.Errorf("GET through client-go before the caches synced = %v, want switchboard's 503", err)
	}
	if n := attempts() - before; n != 3 {
		t.Errorf("client-go sent %d requests before the caches synced, want 3 (one and two retries)", n)
	}
}

func TestUnknownClusterIsNotFoundEvenWhenHealthSaysDown(t *testing.T) {
	f := newFixture(t)
	health := newFakeHealth()
	health.setDown("ghost", "the member cannot be reached", time.Now())
	f.proxier.health = health
	_, err := f.connect(context.Background(), "ghost", "/api/v1/pods", &recordingResponder{})
	if status := statusOf(t, err); status.Code != http.StatusNotFound {
		t.Errorf("Connect to a Cluster that does not exist = %+v, want 404", status)
	}
	if got := health.probesAsked(); len(got) != 0 {
		t.Errorf("ProbeSoon calls for a Cluster that does not exist: %v", got)
	}
}

// A member that rejects switchboard's credential must not look to the
// caller like a rejection of the caller's own credentials.
func TestMemberRejectingTheCredentialIsServiceUnavailable(t *testing.T) {
	answer := answerWith(http.StatusUnauthorized, http.Header{
		"Content-Type":     {"application/json"},
		"Www-Authenticate": {`Bearer realm="member"`},
	}, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			name := "health-401-" + string(m)
			mem := newMember(t, answer)
			f := newFixture(t)
			f.addMember(t, name, mem, "")
			fe := f.newFrontend(t, name, alice, nil)
			metrics := metricsFrom(t, name)

			var resp *http.Response
			var body []byte
			if m == plainMode {
				resp, body = fe.do(t, http.MethodGet, proxyPath(name, "/api/v1/namespaces/dev/pods"), nil, "")
			} else {
				resp, _ = fe.upgrade(t, proxyPath(name, execPath)+"?command=ls", nil)
				body = readBody(t, resp)
			}

			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("answer = %d %q, want 503 (a 401 would blame the caller's credentials)", resp.StatusCode, body)
			}
			status := decodeStatus(t, resp.Header.Get("Content-Type"), body)
			checkStatus(t, status, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, name,
				"rejected switchboard's credential")
			if got := resp.Header.Get("Retry-After"); got != "" {
				t.Errorf("Retry-After = %q; waiting does not renew a credential", got)
			}
			if status.Details.RetryAfterSeconds != 0 {
				t.Errorf("RetryAfterSeconds = %d, want 0", status.Details.RetryAfterSeconds)
			}
			if got := resp.Header.Get("Www-Authenticate"); got != "" {
				t.Errorf("the member's WWW-Authenticate %q was passed on", got)
			}
			if strings.Contains(string(body), `"reason":"Unauthorized"`) {
				t.Errorf("the member's 401 body was passed on: %q", body)
			}
			mem.only(t)
			if got := metrics.upstreamErrors("unauthorized"); got != 1 {
				t.Errorf("upstream_errors_total{reason=unauthorized} rose by %v, want 1", got)
			}
		})
	}
}
