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
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	netproxy "golang.org/x/net/proxy"
	"k8s.io/apimachinery/third_party/forked/golang/netutil"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// Dialer opens connections to a member's API server. A member's plain
// requests, its upgraded streams (exec, attach, port-forward) and its
// health probes all go through the Dialer its transport was built with.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// DialerFunc is a function that is a Dialer.
type DialerFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DialContext calls f.
func (f DialerFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

// Dialers picks the Dialer for each member. Network is the default; a way
// of reaching members that the hub cannot dial plugs in here, with no
// change to the proxy or the health prober. The transport cache asks it
// each time it builds a member's transport: when the Cluster's spec or
// credentials change.
type Dialers interface {
	DialerFor(cl *v1alpha1.Cluster) (Dialer, error)
}

// Network reaches members over the network: directly, or through the
// Cluster's proxyURL. Timeout bounds connecting, including a proxy's
// CONNECT.
type Network struct {
	Timeout time.Duration
}

// DialerFor returns the Dialer for the Cluster's proxyURL, or a direct one.
func (n Network) DialerFor(cl *v1alpha1.Cluster) (Dialer, error) {
	var proxyURL *url.URL
	if cl.Spec.ProxyURL != "" {
		var err error
		if proxyURL, err = url.Parse(cl.Spec.ProxyURL); err != nil {
			return nil, fmt.Errorf("cluster %q: proxyURL: %w", cl.Name, err)
		}
	}
	d, err := newDialer(proxyURL, n.Timeout)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", cl.Name, err)
	}
	return d, nil
}

// newDialer returns the dialer for a member: direct, or through the
// Cluster's proxyURL. The proxy is part of the dialer rather than the
// transport's Proxy field, so that upgraded connections (exec, attach,
// port-forward), which the upgrade-aware handler dials itself, take the
// same path as plain requests.
func newDialer(proxyURL *url.URL, timeout time.Duration) (Dialer, error) {
	direct := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if proxyURL == nil {
		return direct, nil
	}
	switch proxyURL.Scheme {
	case "socks5":
		d, err := netproxy.SOCKS5("tcp", netutil.CanonicalAddr(proxyURL), nil, direct)
		if err != nil {
			return nil, err
		}
		contextDialer, ok := d.(netproxy.ContextDialer)
		if !ok {
			return nil, fmt.Errorf("the SOCKS5 dialer cannot take a context")
		}
		return DialerFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return contextDialer.DialContext(ctx, network, addr)
		}), nil
	case "http", "https":
		return &connectDialer{proxy: proxyURL, direct: direct, timeout: timeout}, nil
	default:
		return nil, fmt.Errorf("proxy scheme %q is not supported", proxyURL.Scheme)
	}
}

// connectDialer opens a tunnel through an HTTP or HTTPS proxy with CONNECT.
type connectDialer struct {
	proxy   *url.URL
	direct  *net.Dialer
	timeout time.Duration
}

func (d *connectDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	conn, err := d.direct.DialContext(ctx, network, netutil.CanonicalAddr(d.proxy))
	if err != nil {
		return nil, fmt.Errorf("dialing proxy %s: %w", d.proxy.Host, err)
	}
	if d.proxy.Scheme == "https" {
		tlsConn := tls.Client(conn, &tls.Config{ServerName: d.proxy.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("TLS handshake with proxy %s: %w", d.proxy.Host, err)
		}
		conn = tlsConn
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: http.Header{},
	}
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("sending CONNECT to proxy %s: %w", d.proxy.Host, err)
	}
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, req)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("reading the CONNECT answer of proxy %s: %w", d.proxy.Host, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_ = conn.Close()
		return nil, fmt.Errorf("proxy %s refused to connect to %s: %s", d.proxy.Host, addr, resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	if reader.Buffered() > 0 {
		// The proxy sent bytes past its answer: keep them.
		return &bufferedConn{Conn: conn, reader: reader}, nil
	}
	return conn, nil
}

// bufferedConn reads first what a bufio.Reader already holds.
type bufferedConn struct {
	net.Conn
	reader *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.reader.Read(p) }
