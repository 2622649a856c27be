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
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// hubDialer opens the agent's upgrade request to the hub.
type hubDialer struct {
	url     *url.URL
	cluster string
	// upgrade sends the request: client-go's wrappers (the hub credential,
	// a bearer token refreshed from its file or an exec plugin, and the
	// user agent) around an HTTP/1.1 transport that dials the hub directly,
	// or through the kubeconfig's proxy-url or HTTPS_PROXY, as kubectl
	// would, and hands back the connection of a 101.
	upgrade http.RoundTripper
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
	proxy := config.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	transport := &http.Transport{
		Proxy:                 proxy,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   dialer.Timeout,
		ResponseHeaderTimeout: dialer.Timeout,
		// Each tunnel is a connection of its own, never pooled.
		DisableKeepAlives: true,
		// Not nil: no HTTP/2, whatever the environment says.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	h := &hubDialer{
		url:     host.JoinPath("apis", v1alpha1.GroupName, v1alpha1.SchemeGroupVersion.Version, "clusters", cluster, tunnel.Subresource),
		cluster: cluster,
	}
	if h.upgrade, err = rest.HTTPWrappersForConfig(config, transport); err != nil {
		return nil, fmt.Errorf("the hub's credentials: %w", err)
	}
	return h, nil
}

// connect sends the upgrade request and returns the upgraded connection
// and the ID of the switchboard replica that took it.
func (h *hubDialer) connect(ctx context.Context) (io.ReadWriteCloser, string, error) {
	// The context ends the request, never the connection it upgrades.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url.String(), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Set(httpstream.HeaderUpgrade, tunnel.Protocol)
	resp, err := h.upgrade.RoundTrip(req)
	if err != nil {
		return nil, "", fmt.Errorf("sending the tunnel request to the hub at %s: %w", h.url.Host, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer func() { _ = resp.Body.Close() }()
		return nil, "", refusal(h.cluster, resp)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		_ = resp.Body.Close()
		return nil, "", fmt.Errorf("the hub's 101 answer carries no connection (%T)", resp.Body)
	}
	if !strings.EqualFold(resp.Header.Get(httpstream.HeaderUpgrade), tunnel.Protocol) {
		_ = conn.Close()
		return nil, "", fmt.Errorf("the hub switched the tunnel request to %q, not %s", resp.Header.Get(httpstream.HeaderUpgrade), tunnel.Protocol)
	}
	return conn, resp.Header.Get(tunnel.HeaderServerID), nil
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
