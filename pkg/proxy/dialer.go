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
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	netproxy "golang.org/x/net/proxy"
	"k8s.io/apimachinery/third_party/forked/golang/netutil"
)

// dialFunc opens a connection to addr.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// newDialer returns the dialer for a member: direct, or through the
// Cluster's proxyURL. The proxy is part of the dialer rather than the
// transport's Proxy field, so that upgraded connections (exec, attach,
// port-forward), which the upgrade-aware handler dials itself, take the
// same path as plain requests.
func newDialer(proxyURL *url.URL, timeout time.Duration) (dialFunc, error) {
	direct := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if proxyURL == nil {
		return direct.DialContext, nil
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
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return contextDialer.DialContext(ctx, network, addr)
		}, nil
	case "http", "https":
		return (&connectDialer{proxy: proxyURL, direct: direct, timeout: timeout}).DialContext, nil
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
