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

// Test helpers: a fake member API server that records what reaches it, a
// Proxier fixture backed by real listers, a recording rest.Responder, a
// "frontend" server that plays the part of the generic connect handler (for
// upgrades, which need a hijackable connection), and tiny CONNECT and SOCKS5
// proxies.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"
	endpointsfilters "k8s.io/apiserver/pkg/endpoints/filters"
	"k8s.io/apiserver/pkg/endpoints/request"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

const (
	testNamespace = "switchboard-system"
	testCluster   = "m1"
	// testToken is switchboard's own credential for members.
	testToken = "sb-member-token-7f3a9c"
	// testDialTimeout is the TransportCache dial timeout of every fixture.
	testDialTimeout = 2 * time.Second
	// waitTimeout bounds anything a test waits for; it is generous on purpose.
	waitTimeout = 10 * time.Second
	// memberHello is what the default member answer says.
	memberHello = "hello from the member"
)

// proxyPath is the hub path of clusters/<cluster>/proxy<path>.
func proxyPath(cluster, path string) string {
	return "/apis/cluster.switchboard.io/v1alpha1/clusters/" + cluster + "/proxy" + path
}

func secretName(cluster string) string { return "creds-" + cluster }

// ---------------------------------------------------------------------------
// The fake member.

// seenRequest is what the member received.
type seenRequest struct {
	Method   string
	Path     string
	RawQuery string
	Host     string
	Proto    string
	Header   http.Header
	Body     string
	// ClientCN is the common name of the client certificate, if one was presented.
	ClientCN string
}

type member struct {
	srv *httptest.Server

	mu     sync.Mutex
	seen   []seenRequest
	answer http.HandlerFunc

	newConns    atomic.Int64
	closedConns atomic.Int64
}

type memberOptions struct {
	http2     bool
	clientCAs *x509.CertPool
}

type memberOption func(*memberOptions)

// withHTTP2 makes the member offer h2 (and http/1.1, as API servers do).
func withHTTP2(on bool) memberOption { return func(o *memberOptions) { o.http2 = on } }

// withClientCAs makes the member require a client certificate signed by pool.
func withClientCAs(pool *x509.CertPool) memberOption {
	return func(o *memberOptions) { o.clientCAs = pool }
}

// newMember starts a TLS member answering with answer (answerDefault if nil).
func newMember(t *testing.T, answer http.HandlerFunc, opts ...memberOption) *member {
	t.Helper()
	var o memberOptions
	for _, opt := range opts {
		opt(&o)
	}
	if answer == nil {
		answer = answerDefault
	}
	m := &member{answer: answer}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(m.serve))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			m.newConns.Add(1)
		case http.StateClosed:
			m.closedConns.Add(1)
		}
	}
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	if o.http2 {
		srv.EnableHTTP2 = true
		srv.TLS.NextProtos = []string{"h2", "http/1.1"}
	}
	if o.clientCAs != nil {
		srv.TLS.ClientCAs = o.clientCAs
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	m.srv = srv
	return m
}

func (m *member) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	seen := seenRequest{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Host:     r.Host,
		Proto:    r.Proto,
		Header:   r.Header.Clone(),
		Body:     string(body),
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		seen.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	m.mu.Lock()
	m.seen = append(m.seen, seen)
	answer := m.answer
	m.mu.Unlock()
	answer(w, r)
}

// setAnswer changes how the member answers.
func (m *member) setAnswer(answer http.HandlerFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.answer = answer
}

// requests is every request the member received so far.
func (m *member) requests() []seenRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]seenRequest(nil), m.seen...)
}

// only is the one request the member received; it fails the test if there
// was not exactly one.
func (m *member) only(t *testing.T) seenRequest {
	t.Helper()
	seen := m.requests()
	if len(seen) != 1 {
		t.Fatalf("the member received %d requests, want exactly 1: %+v", len(seen), seen)
	}
	return seen[0]
}

// last is the latest request the member received.
func (m *member) last(t *testing.T) seenRequest {
	t.Helper()
	seen := m.requests()
	if len(seen) == 0 {
		t.Fatal("the member received no request")
	}
	return seen[len(seen)-1]
}

// addr is the member's host:port.
func (m *member) addr() string { return m.srv.Listener.Addr().String() }

// caPEM is the PEM of the member's serving certificate (self-signed, so its own CA).
func (m *member) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.srv.Certificate().Raw})
}

// answerDefault upgrades upgrade requests (see answerUpgrade) and answers
// anything else with 200 and memberHello.
func answerDefault(w http.ResponseWriter, r *http.Request) {
	if httpstream.IsUpgradeRequest(r) {
		answerUpgrade(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, memberHello)
}

// answerUpgrade hijacks the connection, switches protocols and echoes every
// byte back.
func answerUpgrade(w http.ResponseWriter, r *http.Request) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * waitTimeout))
	_, _ = fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
	if rw.Flush() != nil {
		return
	}
	_, _ = io.Copy(conn, rw.Reader)
}

// answerEchoUser answers with the Impersonate-User the member received.
func answerEchoUser(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, r.Header.Get("Impersonate-User"))
}

// answerWith answers with a fixed status, headers and body.
func answerWith(code int, header http.Header, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// ---------------------------------------------------------------------------
// The Proxier fixture.

type fixture struct {
	clusters   cache.Indexer
	secrets    cache.Indexer
	transports *reach.TransportCache
	proxier    *Proxier
	synced     atomic.Bool
	rv         atomic.Int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, reach.Config{DialTimeout: testDialTimeout, OnFailure: RecordUpstreamError})
}

// newFixtureWith is newFixture with member transports built from cfg.
func newFixtureWith(t *testing.T, cfg reach.Config) *fixture {
	t.Helper()
	f := &fixture{
		clusters:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		secrets:    cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		transports: reach.NewTransportCache(cfg),
	}
	f.synced.Store(true)
	// As in the server: watches end when it shuts down, which these tests
	// never do.
	running, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	f.proxier = NewProxier(Config{
		Clusters:   listers.NewClusterLister(f.clusters),
		Secrets:    corev1listers.NewSecretLister(f.secrets).Secrets(testNamespace),
		Namespace:  testNamespace,
		Synced:     f.synced.Load,
		Transports: f.transports,
		EndWatches: running,
	})
	return f
}

func (f *fixture) nextRV() string { return strconv.FormatInt(f.rv.Add(1), 10) }

// putCluster adds or replaces a Cluster, with a new resourceVersion.
func (f *fixture) putCluster(t *testing.T, cl *v1alpha1.Cluster) {
	t.Helper()
	cl = cl.DeepCopy()
	cl.ResourceVersion = f.nextRV()
	if err := f.clusters.Update(cl); err != nil {
		t.Fatal(err)
	}
}

// putSecret adds or replaces a credentials Secret, with a new resourceVersion.
func (f *fixture) putSecret(t *testing.T, s *corev1.Secret) {
	t.Helper()
	s = s.DeepCopy()
	s.Namespace = testNamespace
	s.UID = types.UID("uid-" + s.Name)
	s.ResourceVersion = f.nextRV()
	if err := f.secrets.Update(s); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) cluster(t *testing.T, name string) *v1alpha1.Cluster {
	t.Helper()
	obj, exists, err := f.clusters.GetByKey(name)
	if err != nil || !exists {
		t.Fatalf("cluster %q is not in the indexer (err %v)", name, err)
	}
	return obj.(*v1alpha1.Cluster).DeepCopy()
}

func (f *fixture) secret(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	obj, exists, err := f.secrets.GetByKey(testNamespace + "/" + name)
	if err != nil || !exists {
		t.Fatalf("Secret %q is not in the indexer (err %v)", name, err)
	}
	return obj.(*corev1.Secret).DeepCopy()
}

func newCluster(name, endpoint string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec: v1alpha1.ClusterSpec{
			Endpoint:             endpoint,
			CredentialsSecretRef: v1alpha1.SecretReference{Name: secretName(name)},
		},
	}
}

func newSecret(name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

// tokenData is a token Secret's data trusting m's serving certificate.
func tokenData(m *member, token string) map[string][]byte {
	return map[string][]byte{
		v1alpha1.SecretKeyToken:    []byte(token),
		v1alpha1.SecretKeyCABundle: m.caPEM(),
	}
}

// addMember registers m as Cluster name, reached at m's URL plus suffix
// (a path prefix, say), with a token Secret.
func (f *fixture) addMember(t *testing.T, name string, m *member, suffix string) {
	t.Helper()
	f.putSecret(t, newSecret(secretName(name), tokenData(m, testToken)))
	f.putCluster(t, newCluster(name, m.srv.URL+suffix))
}

// connect calls Proxier.Connect as the generic connect handler would.
func (f *fixture) connect(ctx context.Context, cluster, path string, responder *recordingResponder) (http.Handler, error) {
	return f.proxier.Connect(ctx, cluster, path, responder)
}

// serve runs req through Connect and its handler with a ResponseRecorder.
// Connect itself must succeed. It cannot be used for upgrades that succeed
// (a ResponseRecorder cannot be hijacked).
func (f *fixture) serve(t *testing.T, cluster, path string, req *http.Request) (*httptest.ResponseRecorder, *recordingResponder) {
	t.Helper()
	rec := httptest.NewRecorder()
	responder := &recordingResponder{w: rec}
	handler, err := f.connect(req.Context(), cluster, path, responder)
	if err != nil {
		t.Fatalf("Connect(%q, %q) = %v, want a handler", cluster, path, err)
	}
	handler.ServeHTTP(rec, req)
	return rec, responder
}

// newProxyRequest is a hub request for clusters/<cluster>/proxy<path>?<query>,
// made by caller (no user in the context when caller is nil).
func newProxyRequest(method, cluster, path, query string, body io.Reader, caller user.Info) *http.Request {
	target := proxyPath(cluster, path)
	if query != "" {
		target += "?" + query
	}
	req := httptest.NewRequest(method, target, body)
	if caller != nil {
		req = req.WithContext(request.WithUser(req.Context(), caller))
	}
	return withRequestInfo(req)
}

// withRequestInfo adds the hub request info to req's context, as the
// server's filters do before the proxy sees a request.
func withRequestInfo(req *http.Request) *http.Request {
	info, err := requestInfoFactory.NewRequestInfo(req)
	if err != nil {
		panic(err)
	}
	return req.WithContext(request.WithRequestInfo(req.Context(), info))
}

// markUpgrade makes req an upgrade request, as kubectl exec sends it.
func markUpgrade(req *http.Request) *http.Request {
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	return req
}

// ---------------------------------------------------------------------------
// The recording rest.Responder.

type recordingResponder struct {
	w http.ResponseWriter

	mu      sync.Mutex
	errs    []error
	objects []runtime.Object
}

// Error writes err as the generic API handlers do: a Status with its code
// when err is an APIStatus (no unwrapping), 500 otherwise.
func (r *recordingResponder) Error(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	writeStatus(r.w, err)
}

func (r *recordingResponder) Object(code int, obj runtime.Object) {
	r.mu.Lock()
	r.objects = append(r.objects, obj)
	r.mu.Unlock()
	r.w.Header().Set("Content-Type", "application/json")
	r.w.WriteHeader(code)
	_ = json.NewEncoder(r.w).Encode(obj)
}

func (r *recordingResponder) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// onlyError is the one error the responder got.
func (r *recordingResponder) onlyError(t *testing.T) error {
	t.Helper()
	errs := r.errors()
	if len(errs) != 1 {
		t.Fatalf("the responder got %d errors, want exactly 1: %v", len(errs), errs)
	}
	return errs[0]
}

// noErrors fails the test if the responder got an error.
func (r *recordingResponder) noErrors(t *testing.T) {
	t.Helper()
	if errs := r.errors(); len(errs) > 0 {
		t.Fatalf("the responder got errors: %v", errs)
	}
}

func writeStatus(w http.ResponseWriter, err error) {
	status := apierrors.NewInternalError(err).Status()
	if s, ok := err.(apierrors.APIStatus); ok {
		status = s.Status()
	}
	status.Kind, status.APIVersion = "Status", "v1"
	body, _ := json.Marshal(status)
	w.Header().Set("Content-Type", "application/json")
	// As responsewriters.ErrorNegotiated does.
	if status.Details != nil && status.Details.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(status.Details.RetryAfterSeconds)))
	}
	w.WriteHeader(int(status.Code))
	_, _ = w.Write(body)
}

// statusOf is the Status of a Kubernetes API error.
func statusOf(t *testing.T, err error) metav1.Status {
	t.Helper()
	s, ok := err.(apierrors.APIStatus)
	if !ok {
		t.Fatalf("error %q (%T) is not a Kubernetes Status error", err, err)
	}
	return s.Status()
}

// decodeStatus reads a Status from a response body.
func decodeStatus(t *testing.T, contentType string, body []byte) metav1.Status {
	t.Helper()
	if !strings.HasPrefix(contentType, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", contentType)
	}
	var status metav1.Status
	if err := json.Unmarshal(body, &status); err != nil {
		t.Fatalf("the body is not a JSON Status: %v: %q", err, body)
	}
	if status.Kind != "Status" || status.APIVersion != "v1" {
		t.Errorf("kind/apiVersion = %q/%q, want Status/v1", status.Kind, status.APIVersion)
	}
	return status
}

// checkStatus checks a Status' code and reason, that it names the cluster in
// its details and message, and that its message contains each of want.
func checkStatus(t *testing.T, status metav1.Status, code int32, reason metav1.StatusReason, cluster string, want ...string) {
	t.Helper()
	checkStatusMessage(t, status, code, reason, append([]string{strconv.Quote(cluster)}, want...)...)
	if status.Details == nil || status.Details.Name != cluster {
		t.Errorf("status details = %+v, want the name %q", status.Details, cluster)
	}
}

// checkStatusMessage checks a Status' code and reason, and that its message
// contains each of want and not switchboard's token.
func checkStatusMessage(t *testing.T, status metav1.Status, code int32, reason metav1.StatusReason, want ...string) {
	t.Helper()
	if status.Code != code || status.Reason != reason {
		t.Errorf("status code/reason = %d/%q, want %d/%q (message %q)", status.Code, status.Reason, code, reason, status.Message)
	}
	if status.Status != metav1.StatusFailure {
		t.Errorf("status.status = %q, want Failure", status.Status)
	}
	for _, w := range want {
		if !strings.Contains(status.Message, w) {
			t.Errorf("status message %q does not contain %q", status.Message, w)
		}
	}
	if strings.Contains(status.Message, testToken) {
		t.Errorf("status message %q contains switchboard's token", status.Message)
	}
}

// ---------------------------------------------------------------------------
// Identity headers.

// carriesIdentity says whether a header name carries identity to an API
// server, in any case.
func carriesIdentity(name string) bool {
	lower := strings.ToLower(name)
	return lower == "authorization" || lower == "proxy-authorization" ||
		strings.HasPrefix(lower, "impersonate-") || strings.HasPrefix(lower, "x-remote-")
}

// identityHeaders is the subset of h that carries identity.
func identityHeaders(h http.Header) http.Header {
	out := http.Header{}
	for name, values := range h {
		if carriesIdentity(name) {
			out[name] = values
		}
	}
	return out
}

// decodedExtras reads the Impersonate-Extra-* headers the way kube-apiserver
// does: lower-cased and percent-decoded keys.
func decodedExtras(t *testing.T, h http.Header) map[string][]string {
	t.Helper()
	extras := map[string][]string{}
	for name, values := range h {
		lower := strings.ToLower(name)
		if !strings.HasPrefix(lower, "impersonate-extra-") {
			continue
		}
		key, err := url.PathUnescape(strings.TrimPrefix(lower, "impersonate-extra-"))
		if err != nil {
			t.Errorf("extra header %q does not decode: %v", name, err)
			continue
		}
		extras[key] = append(extras[key], values...)
	}
	return extras
}

// connectionTokens is every token of every Connection header, whatever the case of its name.
func connectionTokens(h http.Header) []string {
	var tokens []string
	for name, values := range h {
		if !strings.EqualFold(name, "Connection") {
			continue
		}
		for _, v := range values {
			for _, token := range strings.Split(v, ",") {
				if token = strings.TrimSpace(token); token != "" {
					tokens = append(tokens, token)
				}
			}
		}
	}
	return tokens
}

// checkIdentity checks that the member saw exactly the identity headers want.
func checkIdentity(t *testing.T, seen seenRequest, want http.Header) {
	t.Helper()
	if got := identityHeaders(seen.Header); !reflect.DeepEqual(got, want) {
		t.Errorf("identity headers at the member:\n got  %v\n want %v", got, want)
	}
}

// ---------------------------------------------------------------------------
// The frontend: a real server in front of Connect, for upgrades and streams.

type frontend struct {
	srv *httptest.Server

	mu          sync.Mutex
	responders  []*recordingResponder
	connectErrs []error
}

// newFrontend serves clusters/<cluster>/proxy/... through f's Proxier, as
// caller (no user when nil). prepare, if set, edits each request in process
// before Connect, so that it can set header keys Go would canonicalize.
func (f *fixture) newFrontend(t *testing.T, cluster string, caller user.Info, prepare func(*http.Request)) *frontend {
	t.Helper()
	fe := &frontend{}
	prefix := proxyPath(cluster, "")
	// Warnings are recorded as the generic server's chain does.
	fe.srv = httptest.NewServer(endpointsfilters.WithWarningRecorder(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if caller != nil {
			req = req.WithContext(request.WithUser(req.Context(), caller))
		}
		req = withRequestInfo(req)
		if prepare != nil {
			prepare(req)
		}
		responder := &recordingResponder{w: w}
		fe.mu.Lock()
		fe.responders = append(fe.responders, responder)
		fe.mu.Unlock()
		handler, err := f.connect(req.Context(), cluster, strings.TrimPrefix(req.URL.Path, prefix), responder)
		if err != nil {
			fe.mu.Lock()
			fe.connectErrs = append(fe.connectErrs, err)
			fe.mu.Unlock()
			writeStatus(w, err)
			return
		}
		handler.ServeHTTP(w, req)
	})))
	fe.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(fe.srv.Close)
	return fe
}

// responderErrors is every error any responder of fe got.
func (fe *frontend) responderErrors() []error {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	var errs []error
	for _, r := range fe.responders {
		errs = append(errs, r.errors()...)
	}
	return append(errs, fe.connectErrs...)
}

// do sends a plain request through the frontend and reads the whole answer.
func (fe *frontend) do(t *testing.T, method, target string, header http.Header, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, fe.srv.URL+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: waitTimeout}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer to %s %s: %v", method, target, err)
	}
	return resp, data
}

// upgrade sends an upgrade request (Connection: Upgrade, Upgrade: SPDY/3.1,
// plus header) through the frontend on a raw connection, and reads the
// answer's head. The connection stays open for the test to use.
func (fe *frontend) upgrade(t *testing.T, target string, header http.Header) (*http.Response, *upgradedConn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fe.srv.Listener.Addr().String(), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	req, err := http.NewRequest(http.MethodGet, fe.srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	markUpgrade(req)
	for k, v := range header {
		req.Header[k] = v
	}
	if err := req.Write(conn); err != nil {
		t.Fatalf("writing the upgrade request: %v", err)
	}
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, req)
	if err != nil {
		t.Fatalf("reading the answer to the upgrade request: %v", err)
	}
	return resp, &upgradedConn{conn: conn, reader: reader}
}

type upgradedConn struct {
	conn   net.Conn
	reader *bufio.Reader
}

// expectEcho writes messages and expects each back (the member echoes).
func (c *upgradedConn) expectEcho(t *testing.T) {
	t.Helper()
	for _, msg := range []string{"ping\n", "a second, longer message\n"} {
		if _, err := io.WriteString(c.conn, msg); err != nil {
			t.Fatalf("writing to the upgraded connection: %v", err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c.reader, got); err != nil {
			t.Fatalf("reading the echo of %q: %v", msg, err)
		}
		if string(got) != msg {
			t.Fatalf("echo = %q, want %q", got, msg)
		}
	}
}

// readBody reads the body of an answer read from an upgraded connection.
func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading the body: %v", err)
	}
	return body
}

// ---------------------------------------------------------------------------
// Modes: every identity test runs as a plain request and as an upgrade.

type mode string

const (
	plainMode   mode = "plain"
	upgradeMode mode = "upgrade"
	// watchMode is a member watch, whose transport ends it cleanly when
	// the server shuts down.
	watchMode mode = "watch"
)

var modes = []mode{plainMode, upgradeMode}

// roundTripModes are the modes roundTrip knows: the identity tests run in
// each.
var roundTripModes = []mode{plainMode, watchMode, upgradeMode}

// newModeRequest is a GET by alice in mode m and the member path it asks
// for: exec's path as a plain request or as an upgrade, or a watch of pods.
func newModeRequest(m mode, cluster string) (*http.Request, string) {
	path, query := execPath, "command=ls"
	if m == watchMode {
		path, query = "/api/v1/namespaces/dev/pods", "watch=true"
	}
	req := newProxyRequest(http.MethodGet, cluster, path, query, nil, alice)
	if m == upgradeMode {
		markUpgrade(req)
	}
	return req, path
}

// execPath is the member path the upgrade tests use.
const execPath = "/api/v1/namespaces/dev/pods/web-0/exec"

// roundTrip sends one request through fe in mode and checks that it made it
// to the member and back: 200 and memberHello for a plain GET, 101 and an
// echo for an upgrade.
func (fe *frontend) roundTrip(t *testing.T, cluster string, m mode, header http.Header) {
	t.Helper()
	switch m {
	case plainMode:
		resp, body := fe.do(t, http.MethodGet, proxyPath(cluster, "/api/v1/namespaces/dev/pods"), header, "")
		if resp.StatusCode != http.StatusOK || string(body) != memberHello {
			t.Fatalf("answer = %d %q, want 200 %q (responder errors %v)", resp.StatusCode, body, memberHello, fe.responderErrors())
		}
	case watchMode:
		resp, body := fe.do(t, http.MethodGet, proxyPath(cluster, "/api/v1/namespaces/dev/pods")+"?watch=true", header, "")
		if resp.StatusCode != http.StatusOK || string(body) != memberHello {
			t.Fatalf("answer = %d %q, want 200 %q (responder errors %v)", resp.StatusCode, body, memberHello, fe.responderErrors())
		}
	case upgradeMode:
		resp, conn := fe.upgrade(t, proxyPath(cluster, execPath)+"?command=ls&stdout=true", header)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("answer = %d %q, want 101 (responder errors %v)", resp.StatusCode, readBody(t, resp), fe.responderErrors())
		}
		conn.expectEcho(t)
	}
}

// ---------------------------------------------------------------------------
// Tunnelling proxies.

type tunnelProxy struct {
	ln net.Listener

	mu      sync.Mutex
	targets []string
	conns   []net.Conn
}

// newConnectProxy is an HTTP proxy that only does CONNECT; it refuses with
// 403 when deny is set.
func newConnectProxy(t *testing.T, deny bool) *tunnelProxy {
	return startTunnelProxy(t, func(p *tunnelProxy, client net.Conn) {
		reader := bufio.NewReader(client)
		req, err := http.ReadRequest(reader)
		if err != nil {
			return
		}
		if req.Method != http.MethodConnect {
			_, _ = io.WriteString(client, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
			return
		}
		p.record(req.Host)
		if deny {
			_, _ = io.WriteString(client, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
			return
		}
		upstream, err := net.DialTimeout("tcp", req.Host, waitTimeout)
		if err != nil {
			_, _ = io.WriteString(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			return
		}
		_, _ = io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n")
		p.pipe(client, reader, upstream)
	})
}

// newSOCKS5Proxy is a SOCKS5 proxy without authentication that only does CONNECT.
func newSOCKS5Proxy(t *testing.T) *tunnelProxy {
	return startTunnelProxy(t, func(p *tunnelProxy, client net.Conn) {
		reader := bufio.NewReader(client)
		greeting := make([]byte, 2)
		if _, err := io.ReadFull(reader, greeting); err != nil || greeting[0] != 5 {
			return
		}
		if _, err := io.ReadFull(reader, make([]byte, greeting[1])); err != nil {
			return
		}
		if _, err := client.Write([]byte{5, 0}); err != nil {
			return
		}
		head := make([]byte, 4) // version, command, reserved, address type
		if _, err := io.ReadFull(reader, head); err != nil || head[1] != 1 {
			return
		}
		var host string
		switch head[3] {
		case 1, 4:
			ip := make([]byte, map[byte]int{1: 4, 4: 16}[head[3]])
			if _, err := io.ReadFull(reader, ip); err != nil {
				return
			}
			host = net.IP(ip).String()
		case 3:
			n, err := reader.ReadByte()
			if err != nil {
				return
			}
			name := make([]byte, n)
			if _, err := io.ReadFull(reader, name); err != nil {
				return
			}
			host = string(name)
		default:
			return
		}
		port := make([]byte, 2)
		if _, err := io.ReadFull(reader, port); err != nil {
			return
		}
		target := net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port))))
		p.record(target)
		upstream, err := net.DialTimeout("tcp", target, waitTimeout)
		if err != nil {
			_, _ = client.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
			return
		}
		if _, err := client.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
			_ = upstream.Close()
			return
		}
		p.pipe(client, reader, upstream)
	})
}

func startTunnelProxy(t *testing.T, handle func(*tunnelProxy, net.Conn)) *tunnelProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tunnelProxy{ln: ln}
	t.Cleanup(p.close)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(conn)
			go func() {
				handle(p, conn)
			}()
		}
	}()
	return p
}

func (p *tunnelProxy) addr() string { return p.ln.Addr().String() }

func (p *tunnelProxy) record(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = append(p.targets, target)
}

func (p *tunnelProxy) track(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, conn)
}

func (p *tunnelProxy) tunnels() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// pipe copies both ways until either side ends, then closes both.
func (p *tunnelProxy) pipe(client net.Conn, fromClient io.Reader, upstream net.Conn) {
	p.track(upstream)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, fromClient); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, upstream); done <- struct{}{} }()
	<-done
	_ = client.Close()
	_ = upstream.Close()
}

func (p *tunnelProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// ---------------------------------------------------------------------------
// Misc.

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failOnce sends a request by alice in mode m to testCluster, which must
// end, within waitTimeout, in one error from the proxy: its Status, and
// what the caller got.
func (f *fixture) failOnce(t *testing.T, m mode) (metav1.Status, *httptest.ResponseRecorder) {
	t.Helper()
	req, path := newModeRequest(m, testCluster)
	rec := httptest.NewRecorder()
	responder := &recordingResponder{w: rec}
	handler, err := f.connect(req.Context(), testCluster, path, responder)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "the proxied request", func() { handler.ServeHTTP(rec, req) })
	return statusOf(t, responder.onlyError(t)), rec
}

// within runs fn and fails the test if it does not return within waitTimeout.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not return within %s (the dial timeout is %s)", what, waitTimeout, testDialTimeout)
	}
}
