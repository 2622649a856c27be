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

package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// hubDialer opens the agent's upgrade request to the hub.
type hubDialer struct {
	url     *url.URL
	tls     *tls.Config
	dialer  *net.Dialer
	cluster string
	// wrap adds the hub credential (bearer token, refreshed from its file,
	// or exec plugin), impersonation and user agent, as client-go would.
	wrap http.RoundTripper
}

func newHubDialer(config *rest.Config, cluster string, dialer *net.Dialer) (*hubDialer, error) {
	host, err := url.Parse(config.Host)
	if err != nil || host.Host == "" {
		return nil, fmt.Errorf("the hub's address %q is not a URL", config.Host)
	}
	if host.Scheme != "https" {
		return nil, fmt.Errorf("the hub's address %q must be https", config.Host)
	}
	tlsConfig, err := rest.TLSConfigFor(config)
	if err != nil {
		return nil, fmt.Errorf("the hub's TLS configuration: %w", err)
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// An upgrade is HTTP/1.1 only.
	tlsConfig.NextProtos = []string{"http/1.1"}
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = host.Hostname()
	}
	h := &hubDialer{
		url: host.JoinPath("apis", v1alpha1.GroupName, v1alpha1.SchemeGroupVersion.Version,
			"clusters", cluster, tunnel.Subresource),
		tls:     tlsConfig,
		dialer:  dialer,
		cluster: cluster,
	}
	upgrade := &upgradeRoundTripper{h: h}
	if h.wrap, err = rest.HTTPWrappersForConfig(config, upgrade); err != nil {
		return nil, fmt.Errorf("the hub's credentials: %w", err)
	}
	return h, nil
}

// connect sends the upgrade request and returns the upgraded connection
// and the ID of the switchboard replica that took it.
func (h *hubDialer) connect(ctx context.Context) (net.Conn, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url.String(), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Set(httpstream.HeaderUpgrade, tunnel.Protocol)
	resp, err := h.wrap.RoundTrip(req) //nolint:bodyclose // the body is the upgraded connection, which the tunnel closes.
	if err != nil {
		return nil, "", err
	}
	conn := resp.Body.(*upgradedBody).conn
	return conn, resp.Header.Get(tunnel.HeaderServerID), nil
}

// upgradeRoundTripper writes the request on a new TLS connection to the
// hub and reads the answer; on 101 the connection is the body.
type upgradeRoundTripper struct {
	h *hubDialer
}

func (u *upgradeRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	h := u.h
	ctx, cancel := context.WithTimeout(req.Context(), h.dialer.Timeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: h.dialer, Config: h.tls}
	conn, err := d.DialContext(ctx, "tcp", canonicalAddr(h.url))
	if err != nil {
		return nil, fmt.Errorf("connecting to the hub at %s: %w", h.url.Host, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("sending the tunnel request to the hub: %w", err)
	}
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, req)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("reading the hub's answer to the tunnel request: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer func() { _ = conn.Close() }()
		return nil, refusal(h.cluster, resp)
	}
	if !strings.EqualFold(resp.Header.Get(httpstream.HeaderUpgrade), tunnel.Protocol) {
		_ = conn.Close()
		return nil, fmt.Errorf("the hub switched the tunnel request to %q, not %s", resp.Header.Get(httpstream.HeaderUpgrade), tunnel.Protocol)
	}
	_ = conn.SetDeadline(time.Time{})
	upgraded := conn
	if reader.Buffered() > 0 {
		upgraded = &bufferedConn{Conn: conn, reader: reader}
	}
	resp.Body = &upgradedBody{conn: upgraded}
	return resp, nil
}

// refusal says why the hub or switchboard refused the tunnel, from the
// Status in the answer when there is one.
func refusal(cluster string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	message := strings.TrimSpace(string(body))
	var status metav1.Status
	if json.Unmarshal(body, &status) == nil && status.Message != "" {
		message = status.Message
	}
	hint := ""
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		hint = ": the hub does not accept the agent's credential"
	case http.StatusForbidden:
		hint = fmt.Sprintf(": the agent's hub identity may not create clusters/%s for %q", tunnel.Subresource, cluster)
	}
	return fmt.Errorf("the hub refused the tunnel for cluster %q with %s%s: %s", cluster, resp.Status, hint, message)
}

// upgradedBody carries the upgraded connection out of RoundTrip.
type upgradedBody struct {
	conn net.Conn
}

func (b *upgradedBody) Read([]byte) (int, error) { return 0, io.EOF }
func (b *upgradedBody) Close() error             { return nil }

// bufferedConn reads first what a bufio.Reader already holds.
type bufferedConn struct {
	net.Conn
	reader *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.reader.Read(p) }

func canonicalAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "443")
}
