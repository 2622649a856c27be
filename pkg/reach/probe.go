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
	"net/http"
	"net/url"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/transport"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// ProbeClient returns a client that speaks to a member as switchboard
// itself, with no impersonation, over the member's pooled transport, and
// the member's endpoint. Health probes use it: what every authenticated
// identity may read (/readyz, /version) shows whether the member answers
// and accepts the credential.
func (c *TransportCache) ProbeClient(cl *v1alpha1.Cluster, secret *corev1.Secret) (*http.Client, *url.URL, error) {
	t, err := c.Get(cl, secret)
	if err != nil {
		return nil, nil, err
	}
	var rt http.RoundTripper = &redirectBlocker{cluster: cl.Name, onFailure: c.onFailure, delegate: t.base}
	if t.token != "" {
		rt = transport.NewBearerAuthRoundTripper(t.token, rt)
	}
	endpoint := *t.endpoint
	return &http.Client{
		Transport: rt,
		// Probes never follow redirects either.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, &endpoint, nil
}
