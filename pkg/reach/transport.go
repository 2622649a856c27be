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

package reach

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	utilproxy "k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/identity"
)

// Member is the pooled connection to one member: one http.Transport
// (HTTP/2 where the member offers it, kept alive and health checked)
// shared by every request to that member, and the identity round trippers
// and guards on top of it.
type Member struct {
	// fingerprint covers everything the transport is built from.
	fingerprint string
	// version is the Cluster and Secret resourceVersions it was last checked against.
	version  string
	cluster  string
	endpoint *url.URL
	// token is switchboard's bearer token for the member, if it uses one.
	token string
	base  *http.Transport
	// plain carries ordinary requests; upgrade carries exec, attach and port-forward.
	plain   http.RoundTripper
	upgrade utilproxy.UpgradeRequestRoundTripper
	// onFailure is the cache's Config.OnFailure.
	onFailure func(cluster, reason string)
}

// Endpoint is the member's API server URL, with its path prefix.
func (m *Member) Endpoint() url.URL { return *m.endpoint }

// AsCaller carries ordinary requests to the member as their caller: it
// impersonates the user in each request's context, never forwards the
// caller's own credentials or identity headers, and turns the member's
// redirects and 401s into Status answers.
func (m *Member) AsCaller() http.RoundTripper { return m.plain }

// Upgrade carries exec, attach and port-forward to the member as their
// caller, as AsCaller does; GuardUpgrade guards the answer.
func (m *Member) Upgrade() utilproxy.UpgradeRequestRoundTripper { return m.upgrade }

// Config configures a TransportCache.
type Config struct {
	// DialTimeout bounds connecting to a member: the dial, a proxy's
	// CONNECT, and the TLS handshake.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds how long a member may take, once the
	// request is sent, to begin its answer (status line and headers), for
	// every request but those marked MayAnswerLate: a member that accepts
	// the connection and then says nothing would otherwise hold a watch or
	// an exec for ever. Zero is no bound.
	ResponseHeaderTimeout time.Duration
	// Dialers picks how each member is dialled; nil is Network.
	Dialers Dialers
	// OnFailure, when set, hears of each answer of a member that the
	// guards replace: reason is "redirect" or "unauthorized".
	OnFailure func(cluster, reason string)
}

// TransportCache holds one Member per Cluster. It rebuilds a
// transport only when what it is built from changes, and closes the idle
// connections of the one it replaces or forgets.
type TransportCache struct {
	dialTimeout           time.Duration
	responseHeaderTimeout time.Duration
	dialers               Dialers
	onFailure             func(cluster, reason string)

	mu      sync.Mutex
	members map[string]*Member
	// builds counts transports built, for tests.
	builds int
}

// NewTransportCache returns an empty cache.
func NewTransportCache(cfg Config) *TransportCache {
	c := &TransportCache{dialTimeout: cfg.DialTimeout, responseHeaderTimeout: cfg.ResponseHeaderTimeout, dialers: cfg.Dialers, onFailure: cfg.OnFailure, members: map[string]*Member{}}
	if c.dialers == nil {
		c.dialers = Network{Timeout: cfg.DialTimeout}
	}
	if c.onFailure == nil {
		c.onFailure = func(string, string) {}
	}
	return c
}

// Get returns the transport for a Cluster and its credentials Secret,
// building it if there is none or if what it is built from changed. An
// unusable Secret is a *CredentialsError.
func (c *TransportCache) Get(cl *v1alpha1.Cluster, secret *corev1.Secret) (*Member, error) {
	version := cl.ResourceVersion + "/" + secret.ResourceVersion + "/" + string(secret.UID)
	c.mu.Lock()
	current := c.members[cl.Name]
	if current != nil && current.version == version {
		c.mu.Unlock()
		return current, nil
	}
	c.mu.Unlock()

	creds, err := credentialsFromSecret(secret, cl.Spec.InsecureSkipTLSVerify)
	if err != nil {
		return nil, &CredentialsError{Cluster: cl.Name, Secret: secret.Namespace + "/" + secret.Name, Reason: "is not usable: " + err.Error()}
	}
	fingerprint := fingerprintOf(&cl.Spec, creds)

	c.mu.Lock()
	defer c.mu.Unlock()
	current = c.members[cl.Name]
	if current != nil && current.fingerprint == fingerprint {
		// A status write or an unrelated Secret edit: same transport.
		current.version = version
		return current, nil
	}
	built, err := c.build(cl, creds)
	if err != nil {
		return nil, err
	}
	built.fingerprint, built.version = fingerprint, version
	c.members[cl.Name] = built
	c.builds++
	if current != nil {
		// Requests in flight keep their connections; idle ones go.
		current.base.CloseIdleConnections()
		klog.V(2).InfoS("Rebuilt the transport to a member", "cluster", klog.KRef("", cl.Name))
	}
	return built, nil
}

// Forget drops the transport of a deleted Cluster.
func (c *TransportCache) Forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.members[name]; t != nil {
		t.base.CloseIdleConnections()
		delete(c.members, name)
	}
}

// Builds returns how many transports the cache has built.
func (c *TransportCache) Builds() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.builds
}

func (c *TransportCache) build(cl *v1alpha1.Cluster, creds *credentials) (*Member, error) {
	endpoint, err := url.Parse(cl.Spec.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: endpoint %q: %w", cl.Name, cl.Spec.Endpoint, err)
	}
	dialer, err := c.dialers.DialerFor(cl)
	if err != nil {
		return nil, err
	}
	// Compiled once per change of the Cluster's spec, never per request.
	// The API compiled it when the Cluster was written; one that no
	// longer compiles refuses every request rather than be left out.
	// Probes, which use switchboard's own identity, still run.
	policy, errs := identity.Compile(identity.FromV1alpha1(cl.Spec.Identity), field.NewPath("spec", "identity"))
	if len(errs) > 0 {
		policy = identity.RefusingAll("it does not compile, so it refuses every request; fix the Cluster: " + errs.ToAggregate().Error())
	}

	tlsConfig := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            creds.caPool,
		ServerName:         cl.Spec.TLSServerName,
		InsecureSkipVerify: cl.Spec.InsecureSkipTLSVerify, //nolint:gosec // the Cluster asks for it, and the API warns.
	}
	if creds.clientCert != nil {
		tlsConfig.Certificates = []tls.Certificate{*creds.clientCert}
	}
	base := utilnet.SetTransportDefaults(&http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: c.dialTimeout,
		// How long a member may take to begin its answer is bounded per
		// request (headerBound, below); upgrades are bounded as they are
		// dialed (upgradeBase).
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		// Never ask the member for gzip on the caller's behalf (and then
		// unpack it here): the caller's Accept-Encoding passes through, and
		// the answer reaches it as the member sent it.
		DisableCompression: true,
	})
	// The proxy, if any, is in the dialer; environment proxies never apply.
	base.Proxy = nil

	// Upgrades are dialed by the upgrade-aware handler, from this
	// transport's dialer and TLS config; their answers are bounded there
	// (upgradeanswer.go).
	upgradeBase := base.Clone()
	upgradeBase.DialContext = answerDialer{dial: dialer.DialContext, timeout: c.upgradeAnswerTimeout()}.DialContext

	prefix := strings.TrimSuffix(endpoint.Path, "/")
	return &Member{
		cluster:   cl.Name,
		endpoint:  endpoint,
		token:     creds.token,
		base:      base,
		onFailure: c.onFailure,
		plain: &identityRoundTripper{
			cluster: cl.Name,
			token:   creds.token,
			policy:  policy,
			delegate: &credentialGuard{cluster: cl.Name, prefix: prefix, onFailure: c.onFailure,
				delegate: &redirectBlocker{cluster: cl.Name, prefix: prefix, onFailure: c.onFailure,
					delegate: &headerBound{timeout: c.responseHeaderTimeout, delegate: base}}},
		},
		upgrade: utilproxy.NewUpgradeRequestRoundTripper(upgradeBase, &identityRoundTripper{
			cluster:  cl.Name,
			token:    creds.token,
			policy:   policy,
			delegate: &dialDeadline{timeout: c.dialTimeout, delegate: utilproxy.MirrorRequest},
		}),
	}, nil
}

// upgradeAnswerTimeout is how long a member has, from the dial, to finish
// the TLS handshake and begin its answer to an upgrade; zero is no bound.
func (c *TransportCache) upgradeAnswerTimeout() time.Duration {
	if c.responseHeaderTimeout <= 0 {
		return 0
	}
	return c.dialTimeout + c.responseHeaderTimeout
}

// fingerprintOf hashes everything a transport is built from.
func fingerprintOf(spec *v1alpha1.ClusterSpec, creds *credentials) string {
	h := sha256.New()
	write := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	write(string(spec.Connection))
	write(spec.Endpoint)
	write(spec.TLSServerName)
	write(spec.ProxyURL)
	write(strconv.FormatBool(spec.InsecureSkipTLSVerify))
	if spec.Identity != nil {
		policy, _ := json.Marshal(spec.Identity)
		write(string(policy))
	}
	keys := make([]string, 0, len(creds.raw))
	for k := range creds.raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		write(k)
		write(string(creds.raw[k]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// dialDeadline bounds connecting for upgrade requests. The upgrade-aware
// handler dials with the request's context, which has no deadline for
// long-running requests, and its TLS handshake has no timeout of its own;
// without this, a member that accepts TCP but never answers TLS would hold
// an exec forever. The bound context is used only to connect: once the
// connection is up, the stream runs on the request's own context.
type dialDeadline struct {
	timeout  time.Duration
	delegate http.RoundTripper
}

var _ utilnet.RoundTripperWrapper = &dialDeadline{}

func (d *dialDeadline) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), d.timeout)
	// Not cancelled on return: the dial that follows still needs it; the
	// timer releases it.
	time.AfterFunc(d.timeout, cancel)
	return d.delegate.RoundTrip(req.WithContext(ctx))
}

func (d *dialDeadline) WrappedRoundTripper() http.RoundTripper { return d.delegate }

// JoinPath appends path to the endpoint's path prefix, keeping a trailing
// slash the caller sent.
func JoinPath(prefix, path string) string {
	joined := strings.TrimSuffix(prefix, "/") + "/" + strings.TrimPrefix(path, "/")
	if path == "" && !strings.HasSuffix(prefix, "/") {
		joined = strings.TrimSuffix(joined, "/")
		if joined == "" {
			joined = "/"
		}
	}
	return joined
}
