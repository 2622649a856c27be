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

// Package bench measures what switchboard's clusters/<name>/proxy costs
// against talking to a member directly, on the local topology
// (test/topology). The same raw net/http client code drives every path, so
// that client-side overhead is the same on each; client-go is used only to
// set up objects.
package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/test/topology"
)

// proxyPrefix is the hub path of a member's proxy, before the member's name.
const proxyPrefix = "/apis/cluster.switchboard.io/v1alpha1/clusters/"

// Path is one way to reach a member's API: a base URL that member paths
// (/api/v1/...) are appended to, headers sent with every request, and one
// HTTP client shared by every request on the path.
type Path struct {
	// Key is the short name in the table (A, B, C) and Name says what it is.
	Key, Name string
	Base      string
	Header    http.Header
	Client    *http.Client
}

// URL is the full URL of a member path.
func (p *Path) URL(memberPath string) string { return p.Base + memberPath }

// NewRequest makes a request for a member path on this path.
func (p *Path) NewRequest(ctx context.Context, method, memberPath string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.URL(memberPath), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range p.Header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// Get sends a GET and returns the status code, the body and the protocol,
// failing on transport errors only.
func (p *Path) Get(ctx context.Context, memberPath string) (int, []byte, string, error) {
	req, err := p.NewRequest(ctx, http.MethodGet, memberPath)
	if err != nil {
		return 0, nil, "", err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Proto, err
}

// Paths are the ways to member1 that the benchmark compares, and the ways
// to the tunnelled member when the run has one.
type Paths struct {
	Direct, Switchboard, Hub *Path
	// TunnelDirect and Tunnel reach the tunnelled member (D and E); both
	// are nil when the run measures no tunnel.
	TunnelDirect, Tunnel *Path
	// Policy reaches member1 through a Cluster with an identity policy
	// (P); nil when the run measures no policy.
	Policy *Path
}

// All returns the paths to member1 in table order: those the LIST and the
// watches measure too.
func (ps *Paths) All() []*Path { return []*Path{ps.Direct, ps.Switchboard, ps.Hub} }

// Tunnelled returns the paths to the tunnelled member in table order, or
// none.
func (ps *Paths) Tunnelled() []*Path {
	if ps.Tunnel == nil {
		return nil
	}
	return []*Path{ps.TunnelDirect, ps.Tunnel}
}

// Every returns every path, in the order each round of small GETs takes
// them: the tables' order, except that P follows B, which it is measured
// against, so that the two run as close together as they can.
func (ps *Paths) Every() []*Path {
	every := []*Path{ps.Direct, ps.Switchboard}
	if ps.Policy != nil {
		every = append(every, ps.Policy)
	}
	return append(append(every, ps.Hub), ps.Tunnelled()...)
}

// Close drops the idle connections of every path.
func (ps *Paths) Close() {
	for _, p := range ps.Every() {
		p.Client.CloseIdleConnections()
	}
}

// Impersonated is the identity path B claims in front-proxy headers. It has
// rights everywhere: the hub lets system:masters use every member's proxy,
// and the member sees the same identity impersonated.
var Impersonated = struct{ User, Group string }{"admin", "system:masters"}

// NewPaths builds the paths to member from the topology's state:
//
//   - A: straight to the member's kube-apiserver with its admin certificate;
//   - B: straight to switchboard's port, authenticating the way the hub's
//     aggregator does (the front-proxy client certificate and
//     X-Remote-User/X-Remote-Group headers), so the hub is not involved;
//   - C: through the hub's kube-apiserver with the hub admin's certificate,
//     as users do: hub, aggregator, switchboard, member.
//
// When policyCluster is not empty, it names a Cluster for the same member
// with an identity policy (EnsurePolicyCluster), and one more path goes to
// it:
//
//   - P: straight to switchboard's port, as B, through that Cluster.
//
// When tunnelled is not empty, it names an isolated member, reached
// through its agent's tunnel, and two more paths go to it:
//
//   - D: straight to its kube-apiserver, dialed from inside its network
//     namespace, as A;
//   - E: straight to switchboard's port, as B: switchboard, then the
//     tunnel (the hub's kube-apiserver, the member's hub forwarder and its
//     agent), then the member.
func NewPaths(s *topology.State, member, policyCluster, tunnelled string) (*Paths, error) {
	m, err := s.Member(member)
	if err != nil {
		return nil, err
	}
	direct, err := kubeconfigTLS(m)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", member, err)
	}
	hub, err := kubeconfigTLS(&s.Hub)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	front, err := filesTLS(s.Switchboard.CACert, s.FrontProxy.ClientCert, s.FrontProxy.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("front-proxy client: %w", err)
	}
	frontHeader := http.Header{}
	frontHeader.Set("X-Remote-User", Impersonated.User)
	frontHeader.Set("X-Remote-Group", Impersonated.Group)
	ps := &Paths{
		Direct:      &Path{Key: "A", Name: "direct to " + member, Base: m.URL, Client: newClient(direct, nil)},
		Switchboard: &Path{Key: "B", Name: "switchboard alone", Base: s.Switchboard.URL + proxied(member), Header: frontHeader, Client: newClient(front, nil)},
		Hub:         &Path{Key: "C", Name: "through the hub", Base: s.Hub.URL + proxied(member), Client: newClient(hub, nil)},
	}
	if policyCluster != "" {
		ps.Policy = &Path{Key: "P", Name: "switchboard alone, with an identity policy", Base: s.Switchboard.URL + proxied(policyCluster),
			Header: frontHeader, Client: newClient(front, nil)}
	}
	if tunnelled == "" {
		return ps, nil
	}
	edge, err := s.IsolatedMember(tunnelled)
	if err != nil {
		return nil, err
	}
	edgeTLS, err := kubeconfigTLS(edge)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", tunnelled, err)
	}
	ps.TunnelDirect = &Path{Key: "D", Name: "direct to " + tunnelled, Base: edge.URL, Client: newClient(edgeTLS, edge.DialContext)}
	ps.Tunnel = &Path{Key: "E", Name: "switchboard alone through " + tunnelled + "'s tunnel", Base: s.Switchboard.URL + proxied(tunnelled),
		Header: frontHeader, Client: newClient(front, nil)}
	return ps, nil
}

// proxied is the path of a member's proxy on switchboard and on the hub.
func proxied(member string) string { return proxyPrefix + member + "/proxy" }

// newClient is the client every path uses: keep-alive, HTTP/2 when the
// server offers it, and no compression, so that what is measured is the
// proxying and not gzip. No overall timeout: requests carry deadlines in
// their contexts, and watches have none. dial, when set, opens its
// connections (from inside a network namespace).
func newClient(tlsConfig *tls.Config, dial func(ctx context.Context, network, address string) (net.Conn, error)) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     tlsConfig,
		ForceAttemptHTTP2:   true,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}}
}

// kubeconfigTLS is the TLS configuration of a cluster's admin kubeconfig.
func kubeconfigTLS(c *topology.Cluster) (*tls.Config, error) {
	config, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return rest.TLSConfigFor(config)
}

// filesTLS trusts caFile and presents the client pair in certFile and keyFile.
func filesTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}, nil
}
