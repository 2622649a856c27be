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

package apiserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	clocktesting "k8s.io/utils/clock/testing"

	apiserverapi "k8s.io/apiserver/pkg/apis/apiserver"
)

// testCA is a CA that issues client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newTestCA(t testing.TB, name string) *testCA { return newCA(t, name, nil) }

// intermediate returns a CA that ca signed.
func (ca *testCA) intermediate(t testing.TB, name string) *testCA { return newCA(t, name, ca) }

// newCA returns a CA that parent signed, or a self-signed one.
func newCA(t testing.TB, name string, parent *testCA) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns the DER of a client certificate for cn, valid until notAfter.
func (ca *testCA) issue(t testing.TB, cn string, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// connection is what a TLS connection presenting der gives every request
// on it: the certificates parsed once, in one ConnectionState.
func connection(t testing.TB, der []byte) *tls.ConnectionState {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
}

// rotatingCA is a CA bundle that can change, as the hub's
// extension-apiserver-authentication ConfigMap can.
type rotatingCA struct {
	current atomic.Pointer[dynamiccertificates.CAContentProvider]
}

func (r *rotatingCA) set(t testing.TB, ca *testCA) {
	t.Helper()
	p, err := dynamiccertificates.NewStaticCAContent("front-proxy", ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	r.current.Store(&p)
}
func (r *rotatingCA) AddListener(dynamiccertificates.Listener) {}
func (r *rotatingCA) Name() string                             { return "front-proxy" }
func (r *rotatingCA) CurrentCABundleContent() []byte {
	return (*r.current.Load()).CurrentCABundleContent()
}
func (r *rotatingCA) VerifyOptions() (x509.VerifyOptions, bool) {
	return (*r.current.Load()).VerifyOptions()
}

type frontProxyFixture struct {
	frontCA, clientCA *testCA
	bundle            *rotatingCA
	stock             authenticator.Request
	cached            *frontProxyAuthenticator
	clock             *clocktesting.FakeClock
	allowed           atomic.Pointer[[]string]
}

func newFrontProxyFixture(t testing.TB, allowedNames ...string) *frontProxyFixture {
	return newFrontProxyFixtureWith(t, false, allowedNames...)
}

// newFrontProxyFixtureWith builds the fixture, with anonymous requests
// allowed when anonymous is set, as DelegatingAuthenticationOptions
// allows them by default.
func newFrontProxyFixtureWith(t testing.TB, anonymous bool, allowedNames ...string) *frontProxyFixture {
	t.Helper()
	f := &frontProxyFixture{frontCA: newTestCA(t, "front-proxy-ca"), clientCA: newTestCA(t, "client-ca"), bundle: &rotatingCA{},
		clock: clocktesting.NewFakeClock(time.Now())}
	f.bundle.set(t, f.frontCA)
	clientCA, err := dynamiccertificates.NewStaticCAContent("client-ca", f.clientCA.pem)
	if err != nil {
		t.Fatal(err)
	}
	config := &authenticatorfactory.RequestHeaderConfig{
		UsernameHeaders:     headerrequest.StaticStringSlice{"X-Remote-User"},
		UIDHeaders:          headerrequest.StaticStringSlice{"X-Remote-Uid"},
		GroupHeaders:        headerrequest.StaticStringSlice{"X-Remote-Group"},
		ExtraHeaderPrefixes: headerrequest.StaticStringSlice{"X-Remote-Extra-"},
		CAContentProvider:   f.bundle,
		AllowedClientNames:  headerrequest.StringSliceProviderFunc(func() []string { return *f.allowed.Load() }),
	}
	f.allowed.Store(&allowedNames)
	var anon *apiserverapi.AnonymousAuthConfig
	if anonymous {
		anon = &apiserverapi.AnonymousAuthConfig{Enabled: true}
	}
	// The stock authenticator, as DelegatingAuthenticationOptions builds it
	// (without the hub's token webhook).
	f.stock, _, err = authenticatorfactory.DelegatingAuthenticatorConfig{RequestHeaderConfig: config, ClientCertificateCAContentProvider: clientCA, Anonymous: anon}.New()
	if err != nil {
		t.Fatal(err)
	}
	f.cached = newFrontProxyAuthenticator(config, f.stock, f.clock)
	return f
}

func proxyRequest(conn *tls.ConnectionState, header map[string][]string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "https://switchboard/apis/cluster.switchboard.io/v1alpha1/clusters/a/proxy/api", nil)
	req.TLS = conn
	for k, v := range header {
		req.Header[k] = v
	}
	return req
}

type authResult struct {
	Name, UID string
	Groups    []string
	Extra     map[string][]string
	OK        bool
	Err       bool
}

func authenticate(a authenticator.Request, req *http.Request) authResult {
	resp, ok, err := a.AuthenticateRequest(req)
	r := authResult{OK: ok, Err: err != nil}
	if resp != nil && resp.User != nil {
		r.Name, r.UID, r.Groups, r.Extra = resp.User.GetName(), resp.User.GetUID(), resp.User.GetGroups(), resp.User.GetExtra()
	}
	return r
}

// The cached authenticator answers every request as the stock one does,
// and verifies a connection's chain once.
func TestFrontProxyVerificationAnswersAsTheStockAuthenticator(t *testing.T) {
	f := newFrontProxyFixture(t, "front-proxy-client")
	later := time.Now().Add(time.Hour)
	front := f.frontCA.issue(t, "front-proxy-client", later)
	otherName := f.frontCA.issue(t, "someone-else", later)
	user := f.clientCA.issue(t, "alice", later)
	wrongCA := f.clientCA.issue(t, "front-proxy-client", later)
	remote := map[string][]string{"X-Remote-User": {"bob"}, "X-Remote-Uid": {"u-1"}, "X-Remote-Group": {"dev", "ops"},
		"X-Remote-Extra-Scopes": {"a", "b"}}

	for _, tc := range []struct {
		name     string
		der      []byte
		header   map[string][]string
		want     authResult
		verified int
	}{
		{"a front proxy's request", front, remote,
			authResult{Name: "bob", UID: "u-1", Groups: []string{"dev", "ops", "system:authenticated"}, Extra: map[string][]string{"scopes": {"a", "b"}}, OK: true}, 1},
		{"a front proxy that names no user", front, nil, authResult{Err: true}, 1},
		{"a front-proxy CA certificate with a name not allowed", otherName, remote, authResult{Err: true}, 0},
		{"a client certificate of a user", user, remote, authResult{Name: "alice", Groups: []string{"system:authenticated"}, Extra: map[string][]string{}, OK: true}, 0},
		{"the front proxy's name from the client CA", wrongCA, remote,
			authResult{Name: "front-proxy-client", Groups: []string{"system:authenticated"}, Extra: map[string][]string{}, OK: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(f.cached.verified)
			conn := connection(t, tc.der)
			for i := range 3 {
				want := authenticate(f.stock, proxyRequest(conn, tc.header))
				got := authenticate(f.cached, proxyRequest(conn, tc.header))
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("request %d: cached %+v, stock %+v", i, got, want)
				}
				// A client certificate's ID depends on the key generated for it.
				if id := got.Extra["authentication.kubernetes.io/credential-id"]; len(id) == 1 && len(got.Extra) == 1 {
					got.Extra = map[string][]string{}
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("request %d: %+v, want %+v", i, got, tc.want)
				}
			}
			if len(f.cached.verified) != tc.verified {
				t.Errorf("%d chains remembered after three requests on one connection, want %d", len(f.cached.verified), tc.verified)
			}
		})
	}
}

func TestFrontProxyVerificationIsRedoneWhenItMayNoLongerHold(t *testing.T) {
	f := newFrontProxyFixture(t)
	expires := time.Now().Add(10 * time.Second)
	conn := connection(t, f.frontCA.issue(t, "front-proxy-client", expires))
	remote := map[string][]string{"X-Remote-User": {"bob"}}
	if !f.cached.fromFrontProxy(proxyRequest(conn, remote)) {
		t.Fatal("a valid front-proxy chain did not verify")
	}

	// Past the certificate's NotAfter, which is before frontProxyVerifiedFor.
	f.clock.SetTime(expires.Add(time.Second))
	if f.cached.fromFrontProxy(proxyRequest(conn, remote)) {
		t.Error("an expired certificate still counts as verified")
	}

	// A new CA bundle: a chain verified against the old one is verified
	// again, and refused.
	f.clock.SetTime(time.Now())
	if !f.cached.fromFrontProxy(proxyRequest(conn, remote)) {
		t.Fatal("the chain did not verify again")
	}
	f.bundle.set(t, newTestCA(t, "new-front-proxy-ca"))
	if f.cached.fromFrontProxy(proxyRequest(conn, remote)) {
		t.Error("a chain of the old CA still counts as verified after the bundle changed")
	}
	if got := authenticate(f.cached, proxyRequest(conn, remote)); got.OK {
		t.Errorf("a chain of the old CA authenticated as %+v after the bundle changed", got)
	}

	// A chain verified frontProxyVerifiedFor ago is verified again.
	f.bundle.set(t, f.frontCA)
	roots := mustRoots(t, f)
	long := connection(t, f.frontCA.issue(t, "front-proxy-client", time.Now().Add(time.Hour)))
	if !f.cached.fromFrontProxy(proxyRequest(long, remote)) {
		t.Fatal("a valid front-proxy chain did not verify")
	}
	if !f.cached.stillVerified(long.PeerCertificates, roots, f.clock.Now()) {
		t.Fatal("the chain was not remembered")
	}
	f.clock.Step(frontProxyVerifiedFor)
	if f.cached.stillVerified(long.PeerCertificates, roots, f.clock.Now()) {
		t.Error("a chain verified frontProxyVerifiedFor ago still counts as verified")
	}
}

// A chain through an intermediate verifies only with the intermediate
// presented, and a name no longer allowed is refused at once.
func TestFrontProxyVerificationChecksTheChainAndTheNameEveryTime(t *testing.T) {
	f := newFrontProxyFixture(t, "front-proxy-client")
	inter := f.frontCA.intermediate(t, "front-proxy-intermediate")
	leaf := connection(t, inter.issue(t, "front-proxy-client", time.Now().Add(time.Hour)))
	leaf.PeerCertificates = append(leaf.PeerCertificates, inter.cert)
	remote := map[string][]string{"X-Remote-User": {"bob"}}
	for _, tc := range []struct {
		name string
		conn *tls.ConnectionState
		ok   bool
	}{
		{"with its intermediate", leaf, true},
		{"the same leaf without its intermediate", &tls.ConnectionState{PeerCertificates: leaf.PeerCertificates[:1]}, false},
		{"with its intermediate again", leaf, true},
	} {
		want := authenticate(f.stock, proxyRequest(tc.conn, remote))
		got := authenticate(f.cached, proxyRequest(tc.conn, remote))
		if !reflect.DeepEqual(got, want) || got.OK != tc.ok {
			t.Errorf("%s: cached %+v, stock %+v, want OK %v", tc.name, got, want, tc.ok)
		}
	}
	f.allowed.Store(&[]string{"another-front-proxy"})
	if got := authenticate(f.cached, proxyRequest(leaf, remote)); got.OK {
		t.Errorf("a verified chain whose name is no longer allowed authenticated as %+v", got)
	}
}

// With anonymous requests allowed, as by default, every request is still
// answered as the stock authenticator answers it; and so under concurrent
// requests on shared connections.
func TestFrontProxyVerificationWithAnonymousAndConcurrentRequests(t *testing.T) {
	f := newFrontProxyFixtureWith(t, true, "front-proxy-client")
	later := time.Now().Add(time.Hour)
	conns := []*tls.ConnectionState{
		connection(t, f.frontCA.issue(t, "front-proxy-client", later)),
		connection(t, f.frontCA.issue(t, "someone-else", later)),
		connection(t, f.clientCA.issue(t, "alice", later)),
		nil,
	}
	headers := []map[string][]string{{"X-Remote-User": {"bob"}, "X-Remote-Group": {"dev"}}, nil}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				conn, header := conns[(w+i)%len(conns)], headers[i%len(headers)]
				want := authenticate(f.stock, proxyRequest(conn, header))
				got := authenticate(f.cached, proxyRequest(conn, header))
				if !reflect.DeepEqual(got, want) {
					t.Errorf("cached %+v, stock %+v", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func mustRoots(t *testing.T, f *frontProxyFixture) *x509.CertPool {
	t.Helper()
	opts, ok := f.bundle.VerifyOptions()
	if !ok {
		t.Fatal("no verify options")
	}
	return opts.Roots
}

func TestFrontProxyVerificationRemembersABoundedNumberOfChains(t *testing.T) {
	f := newFrontProxyFixture(t)
	der := f.frontCA.issue(t, "front-proxy-client", time.Now().Add(time.Hour))
	remote := map[string][]string{"X-Remote-User": {"bob"}}
	for range frontProxyVerifiedMax + 10 {
		if got := authenticate(f.cached, proxyRequest(connection(t, der), remote)); !got.OK {
			t.Fatalf("refused: %+v", got)
		}
	}
	if n := len(f.cached.verified); n > frontProxyVerifiedMax {
		t.Errorf("%d chains remembered, more than %d", n, frontProxyVerifiedMax)
	}
}

// BenchmarkFrontProxyAuthentication is the authentication of a request
// from the hub's aggregator, on a connection already verified, by the
// stock authenticator and by the cached one.
func BenchmarkFrontProxyAuthentication(b *testing.B) {
	f := newFrontProxyFixture(b, "front-proxy-client")
	conn := connection(b, f.frontCA.issue(b, "front-proxy-client", time.Now().Add(time.Hour)))
	remote := map[string][]string{"X-Remote-User": {"admin"}, "X-Remote-Group": {"system:masters"}}
	for _, bc := range []struct {
		name string
		a    authenticator.Request
	}{{"stock", f.stock}, {"cached", f.cached}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := bc.a.AuthenticateRequest(proxyRequest(conn, remote)); !ok || err != nil {
					b.Fatal("not authenticated", err)
				}
			}
		})
	}
}
