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

package health

// Test helpers: a fake member API server whose answers can be switched and
// which can be stopped and started again on the same address, credentials
// Secrets and Clusters pointing at it, and an unrelated CA.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

const (
	testNamespace = "switchboard-system"
	// testToken is switchboard's own credential for members.
	testToken = "sb-probe-token-51d2e8"
	// testDialTimeout is the TransportCache dial timeout of every test.
	testDialTimeout = 2 * time.Second
	// testTimeout is the probe timeout of tests whose member answers.
	testTimeout = 5 * time.Second
	// memberVersion is what the fake member's /version reports.
	memberVersion = "v1.35.2+member"
)

func secretName(cluster string) string { return "creds-" + cluster }

// seenRequest is what the member received.
type seenRequest struct {
	Method string
	Path   string
	Header http.Header
}

// member is a fake member API server over TLS (httptest's certificate,
// valid for 127.0.0.1). Its answer can be switched, and it can be stopped
// (its port then refuses connections) and started again on the same address.
type member struct {
	t *testing.T

	mu     sync.Mutex
	srv    *httptest.Server
	addr   string
	answer http.HandlerFunc
	seen   []seenRequest
}

// newMember starts a member answering with answer (answerHealthy if nil).
func newMember(t *testing.T, answer http.HandlerFunc) *member {
	t.Helper()
	if answer == nil {
		answer = answerHealthy
	}
	m := &member{t: t, answer: answer}
	m.start()
	t.Cleanup(m.stop)
	return m
}

// start serves on the member's address (a new one the first time).
func (m *member) start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil {
		m.t.Fatal("the member is already running")
	}
	addr := m.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	// The port was just released; binding it again may take a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		m.t.Fatalf("listening on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(m.serve))
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	m.srv = srv
	m.addr = ln.Addr().String()
}

// stop closes the member: its port refuses connections until start.
func (m *member) stop() {
	m.mu.Lock()
	srv := m.srv
	m.srv = nil
	m.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (m *member) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.seen = append(m.seen, seenRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
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

// url is the member's endpoint.
func (m *member) url() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return "https://" + m.addr
}

// caPEM is the PEM of the member's serving certificate (self-signed, so its
// own CA; every httptest server uses the same one).
func (m *member) caPEM() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.srv.Certificate().Raw})
}

// answerHealthy answers /readyz with 200 ok and /version with memberVersion.
func answerHealthy(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/readyz":
		_, _ = io.WriteString(w, "ok")
	case "/version":
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"major":"1","minor":"35","gitVersion":%q,"platform":"linux/amd64"}`, memberVersion)
	default:
		http.NotFound(w, r)
	}
}

// answerNotReady answers /readyz with 500 and a kube-apiserver-like body.
func answerNotReady(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/readyz" {
		answerHealthy(w, r)
		return
	}
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, "[-]etcd failed: reason withheld\n[+]ping ok\nreadyz check failed\n")
}

// answerUnauthorized rejects every request as kube-apiserver rejects a bad token.
func answerUnauthorized(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
}

// tokenSecret is a token Secret for cluster trusting caPEM.
func tokenSecret(cluster string, caPEM []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: secretName(cluster), Namespace: testNamespace,
			UID: types.UID("uid-" + secretName(cluster)), ResourceVersion: "1",
		},
		Data: map[string][]byte{
			v1alpha1.SecretKeyToken:    []byte(testToken),
			v1alpha1.SecretKeyCABundle: caPEM,
		},
	}
}

func newCluster(name, endpoint string) *v1alpha1.Cluster {
	return &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), ResourceVersion: "1", Generation: 3},
		Spec: v1alpha1.ClusterSpec{
			Endpoint:             endpoint,
			CredentialsSecretRef: v1alpha1.SecretReference{Name: secretName(name)},
		},
	}
}

// otherCAPEM is a self-signed CA that signed nothing the members serve.
func otherCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "some other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// closedEndpoint is an https endpoint on a port nobody listens on.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "https://" + addr
}

// checkProbeHeaders checks that every request carries switchboard's own
// token and no impersonation headers.
func checkProbeHeaders(t *testing.T, seen []seenRequest) {
	t.Helper()
	if len(seen) == 0 {
		t.Fatal("the member received no request")
	}
	for _, s := range seen {
		if got, want := s.Header.Get("Authorization"), "Bearer "+testToken; got != want {
			t.Errorf("%s %s: Authorization = %q, want %q", s.Method, s.Path, got, want)
		}
		for name := range s.Header {
			lower := strings.ToLower(name)
			if strings.HasPrefix(lower, "impersonate-") || strings.HasPrefix(lower, "x-remote-") {
				t.Errorf("%s %s carries %s: %v", s.Method, s.Path, name, s.Header[name])
			}
		}
	}
}
