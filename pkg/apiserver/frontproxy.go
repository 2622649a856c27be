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
	"crypto/x509"
	"net/http"
	"slices"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/utils/clock"
)

// Every request from the hub's aggregator carries its front-proxy client
// certificate, and the generic server's request-header authenticator
// verifies that certificate's chain on every request: one signature check,
// about a fifth of switchboard's CPU per proxied GET. The chain is the same
// for every request on a connection, so it only needs to be verified once.
// It is remembered by the leaf certificate Go parsed for the connection
// (connections that resume a TLS session share that parse, and so the
// entry), with the chain presented and the CA bundle it verified against.

const (
	// frontProxyVerifiedFor is how long a verified chain is trusted without
	// verifying it again, at most: never past a certificate's NotAfter, and
	// never once the front-proxy CA bundle changes.
	frontProxyVerifiedFor = time.Minute
	// frontProxyVerifiedMax bounds the chains remembered: one per
	// connection from a front proxy, so a handful in practice.
	frontProxyVerifiedMax = 1024
)

// CacheFrontProxyVerification makes the server's authenticator verify a
// front proxy's client certificate chain once per connection rather than
// once per request. It authenticates exactly as the stock authenticator
// does: a request whose chain was verified (against the current CA bundle,
// within the certificates' validity, by a client name the configuration
// allows) is authenticated by the request headers, as the stock
// request-header authenticator does after verifying; every other request
// goes to the stock authenticator unchanged. It does nothing when the
// server takes no front proxy.
func CacheFrontProxyVerification(authn *genericapiserver.AuthenticationInfo) {
	if authn.Authenticator == nil || authn.RequestHeaderConfig == nil {
		return
	}
	authn.Authenticator = newFrontProxyAuthenticator(authn.RequestHeaderConfig, authn.Authenticator, clock.RealClock{})
}

// frontProxyAuthenticator authenticates requests from a verified front
// proxy by their headers, and passes every other request to the stock
// authenticator.
type frontProxyAuthenticator struct {
	config *authenticatorfactory.RequestHeaderConfig
	// headers is what the stock request-header authenticator runs once it
	// has verified the chain, with the same system:authenticated group the
	// stock authenticator adds.
	headers authenticator.Request
	stock   authenticator.Request
	clock   clock.PassiveClock

	mu       sync.RWMutex
	verified map[*x509.Certificate]verifiedChain
}

// verifiedChain is a front proxy's chain that verified: the certificates
// the client presented, the CA bundle they verified against, and when the
// verification must be done again.
type verifiedChain struct {
	presented []*x509.Certificate
	roots     *x509.CertPool
	until     time.Time
}

func newFrontProxyAuthenticator(config *authenticatorfactory.RequestHeaderConfig, stock authenticator.Request, clk clock.PassiveClock) *frontProxyAuthenticator {
	return &frontProxyAuthenticator{
		config:   config,
		headers:  group.NewAuthenticatedGroupAdder(headerrequest.NewDynamic(config.UsernameHeaders, config.UIDHeaders, config.GroupHeaders, config.ExtraHeaderPrefixes)),
		stock:    stock,
		clock:    clk,
		verified: map[*x509.Certificate]verifiedChain{},
	}
}

func (a *frontProxyAuthenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if a.fromFrontProxy(req) {
		if resp, ok, err := a.headers.AuthenticateRequest(req); ok && err == nil {
			return resp, true, nil
		}
	}
	// Not a front proxy, or one that named no user: the stock
	// authenticator decides, as it would have.
	return a.stock.AuthenticateRequest(req)
}

// fromFrontProxy says whether the request's client certificate chain
// verifies as a front proxy's, as the stock request-header authenticator
// checks it: against the current CA bundle, with client-auth usage, and by
// an allowed client name.
func (a *frontProxyAuthenticator) fromFrontProxy(req *http.Request) bool {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return false
	}
	opts, ok := a.config.CAContentProvider.VerifyOptions()
	if !ok || opts.Roots == nil {
		return false
	}
	presented := req.TLS.PeerCertificates
	leaf := presented[0]
	if !a.allowedName(leaf) {
		return false
	}
	now := a.clock.Now()
	if a.stillVerified(presented, opts.Roots, now) {
		return true
	}
	if opts.Intermediates == nil && len(presented) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, intermediate := range presented[1:] {
			opts.Intermediates.AddCert(intermediate)
		}
	}
	opts.CurrentTime = now
	chains, err := leaf.Verify(opts)
	if err != nil {
		return false
	}
	a.remember(presented, opts.Roots, now, chains)
	return true
}

// allowedName is the stock check of the client's common name: any name
// when the configuration allows every one.
func (a *frontProxyAuthenticator) allowedName(leaf *x509.Certificate) bool {
	if a.config.AllowedClientNames == nil {
		// Never so when the generic server's options build the
		// configuration; the stock authenticator decides.
		return false
	}
	allowed := a.config.AllowedClientNames.Value()
	return len(allowed) == 0 || slices.Contains(allowed, leaf.Subject.CommonName)
}

// stillVerified says whether these very certificates verified against
// these very roots, and the verification still holds at now.
func (a *frontProxyAuthenticator) stillVerified(presented []*x509.Certificate, roots *x509.CertPool, now time.Time) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	v, ok := a.verified[presented[0]]
	// A stale entry stays until remember replaces or sweeps it.
	return ok && v.roots == roots && now.Before(v.until) && slices.Equal(v.presented, presented)
}

// remember records a chain that verified at now, until the first of its
// certificates expires or frontProxyVerifiedFor passes. The map holds the
// certificates it is keyed by, so that no other certificate can reuse a
// key while it is remembered.
func (a *frontProxyAuthenticator) remember(presented []*x509.Certificate, roots *x509.CertPool, now time.Time, chains [][]*x509.Certificate) {
	until := now.Add(frontProxyVerifiedFor)
	for _, chain := range chains {
		for _, cert := range chain {
			if cert.NotAfter.Before(until) {
				until = cert.NotAfter
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Verifications are few (one per connection a minute), so each sweeps
	// out the expired ones: closed connections' certificates and old CA
	// bundles are not kept.
	for leaf, v := range a.verified {
		if !now.Before(v.until) || v.roots != roots {
			delete(a.verified, leaf)
		}
	}
	if len(a.verified) >= frontProxyVerifiedMax {
		clear(a.verified)
	}
	a.verified[presented[0]] = verifiedChain{presented: slices.Clone(presented), roots: roots, until: until}
}
