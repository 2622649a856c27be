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

// Package proxy forwards requests for clusters/<name>/proxy/<path> to the
// member's API server as the original caller. It holds one pooled transport
// per member, reads Clusters and credentials from informer caches (no etcd
// or hub read per request), and sends the caller's identity as
// impersonation headers set in the transport.
package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilproxy "k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apiserver/pkg/registry/rest"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// Proxier connects proxy requests to members.
type Proxier struct {
	clusters listers.ClusterLister
	// secrets lists credentials Secrets in switchboard's namespace; nil
	// when the server runs without a hub.
	secrets   corev1listers.SecretNamespaceLister
	namespace string
	// synced says whether the informer caches hold a full view.
	synced     func() bool
	transports *reach.TransportCache
	// health, when set, knows members that do not answer.
	health MemberHealth
	// endWatches, when set, is done when the server stops taking new
	// requests; proxied watches then end after the event in flight.
	endWatches context.Context
}

// MemberHealth is what the proxy asks the health prober.
type MemberHealth interface {
	// Unreachable says whether the latest probe could not reach the
	// member, when it ran and why.
	Unreachable(cluster string) (message string, at time.Time, down bool)
	// ProbeSoon asks for a new probe of the member.
	ProbeSoon(cluster string)
}

// Config is what a Proxier reads from.
type Config struct {
	// Clusters lists the Clusters.
	Clusters listers.ClusterLister
	// Secrets lists credentials Secrets in Namespace; nil when the server
	// runs without a hub.
	Secrets   corev1listers.SecretNamespaceLister
	Namespace string
	// Synced says whether the caches of Clusters and Secrets hold a full view.
	Synced func() bool
	// Transports holds the pooled transports to members.
	Transports *reach.TransportCache
	// Health, when set, lets the proxy fail fast on members known to be down.
	Health MemberHealth
	// EndWatches, when set, is done when the server stops taking new
	// requests; proxied watches then end cleanly, after the event in flight.
	EndWatches context.Context
}

// NewProxier returns a Proxier.
func NewProxier(cfg Config) *Proxier {
	return &Proxier{clusters: cfg.Clusters, secrets: cfg.Secrets, namespace: cfg.Namespace, synced: cfg.Synced,
		transports: cfg.Transports, health: cfg.Health, endWatches: cfg.EndWatches}
}

// Connect returns the handler that forwards one request to the member
// named name, at path.
func (p *Proxier) Connect(ctx context.Context, name, path string, responder rest.Responder) (http.Handler, error) {
	var responded atomic.Int32
	handler, err := p.connect(name, path, responder, &responded)
	if err != nil {
		observeRejected(ctx, name, err)
		warnAbout(ctx, path, err)
		return nil, err
	}
	return withMetrics(name, handler, &responded), nil
}

func (p *Proxier) connect(name, path string, responder rest.Responder, responded *atomic.Int32) (http.Handler, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	member, err := p.Reach(name)
	if err != nil {
		return nil, err
	}

	endpoint := member.Endpoint()
	responderFor := &errorResponder{cluster: name, endpoint: endpoint.String(), path: path, responder: responder, responded: responded}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		location := endpoint
		location.Path = reach.JoinPath(location.Path, path)
		// The upgrade path dials Location as it is, so the query (exec's
		// command and streams, for one) must be in it.
		location.RawQuery = originalQuery(req)
		transport := member.AsCaller()
		if p.endWatches != nil && isMemberWatch(req) {
			if p.endWatches.Err() != nil {
				// As the generic server answers watches once it takes no
				// new requests: the caller retries, on another replica.
				responded.Store(http.StatusServiceUnavailable)
				responder.Error(retryLater(name, fmt.Sprintf("switchboard is shutting down and takes no new watches of cluster %q; retry, another replica will serve it", name)))
				return
			}
			transport = endWatchesAt(p.endWatches, transport)
		}
		handler := utilproxy.NewUpgradeAwareHandler(&location, transport, false, false, responderFor)
		handler.UpgradeTransport = member.Upgrade()
		handler.UseLocationHost = true
		// The stock flush interval (200 ms), as the hub's aggregator uses:
		// an answer of known length that ends sooner goes out in as few
		// frames as it fits, its headers with its body, and one written
		// slowly still comes out at most 200 ms after each write. Watch
		// events and log lines go out as they arrive: the reverse proxy
		// flushes every write of an answer without a Content-Length (a
		// watch, logs -f, any chunked answer) at once.

		// The transport already turns redirects into a 502 Status; this is
		// the stock guard behind it.
		handler.RejectForwardingRedirects = true
		if location.RawQuery != req.URL.RawQuery {
			req = req.Clone(req.Context())
			u := *req.URL
			u.RawQuery = location.RawQuery
			req.URL = &u
		}
		if mayAnswerLate(req) {
			req = req.WithContext(reach.MayAnswerLate(req.Context()))
		}
		if httpstream.IsUpgradeRequest(req) {
			// The member's answer to an upgrade is copied to the hijacked
			// connection, past the round trippers: its code is read there.
			w, req = member.GuardUpgrade(w, req, func(code int) { responded.Store(int32(code)) })
		}
		handler.ServeHTTP(w, req)
	}), nil
}

// Reach returns the pooled connection to the member named name, or the
// typed error that says why it cannot be reached now: switchboard's caches
// are not synced (503 with Retry-After), the Cluster does not exist (404),
// its last probe failed (503 at once, without waiting for a dial), or its
// credentials are missing or unusable (503).
func (p *Proxier) Reach(name string) (*reach.Member, error) {
	return p.reach(name, true)
}

// Reachable says whether Reach would return a connection to the member
// now, without Reach's side effects: it asks for no probe and counts no
// failure.
func (p *Proxier) Reachable(name string) bool {
	_, err := p.reach(name, false)
	return err == nil
}

// reach is Reach; record asks for a probe of a member known to be down,
// and counts the failures.
func (p *Proxier) reach(name string, record bool) (*reach.Member, error) {
	count := func(reason string) {
		if record {
			RecordUpstreamError(name, reason)
		}
	}
	if !p.synced() {
		return nil, retryLater(name, fmt.Sprintf("cluster %q cannot be reached yet: switchboard is starting and its caches of Clusters and credentials are not synced", name))
	}
	cl, err := p.clusters.Get(name)
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(cluster.Resource("clusters"), name)
	}
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("reading cluster %q from the cache: %w", name, err))
	}
	if p.health != nil {
		if message, at, down := p.health.Unreachable(name); down {
			// Fail at once rather than wait for the dial timeout; a new
			// probe clears the state as soon as the member answers. No
			// Retry-After: client-go would retry ten times, a second apart,
			// and show the same error ten seconds later.
			if record {
				p.health.ProbeSoon(name)
			}
			count("down")
			return nil, reach.Unavailable(name, fmt.Sprintf("cluster %q is unreachable: its last probe, at %s, failed: %s",
				name, at.UTC().Format(time.RFC3339), message))
		}
	}
	if p.secrets == nil {
		return nil, reach.Unavailable(name, fmt.Sprintf("cluster %q cannot be reached: switchboard runs without a hub connection, so it cannot read credentials Secrets", name))
	}
	secretRef := p.namespace + "/" + cl.Spec.CredentialsSecretRef.Name
	secret, err := p.secrets.Get(cl.Spec.CredentialsSecretRef.Name)
	if apierrors.IsNotFound(err) {
		count("credentials")
		return nil, reach.Unavailable(name, (&reach.CredentialsError{Cluster: name, Secret: secretRef, Reason: "does not exist"}).Error())
	}
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("reading Secret %s from the cache: %w", secretRef, err))
	}
	member, err := p.transports.Get(cl, secret)
	if err != nil {
		if message, ok := reach.CredentialsProblem(err); ok {
			count("credentials")
			return nil, reach.Unavailable(name, message)
		}
		return nil, apierrors.NewInternalError(err)
	}

	return member, nil
}

// CheckPath refuses dot segments, which could step out of an endpoint's
// path prefix (a member behind a gateway at https://gw/clusters/a must not
// reach https://gw/clusters/b).
func CheckPath(path string) error {
	for _, segment := range strings.Split(path, "/") {
		if segment == "." || segment == ".." {
			return apierrors.NewBadRequest(fmt.Sprintf("the proxied path %q must not contain . or .. segments", path))
		}
	}
	return nil
}
