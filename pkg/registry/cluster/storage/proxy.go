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

package storage

import (
	"context"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/proxy"
)

// proxyMethods are the HTTP methods clusters/proxy forwards.
var proxyMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

// ProxyREST serves clusters/<name>/proxy/<path>: it forwards the request to
// the member's API server as the caller.
type ProxyREST struct {
	Proxier *proxy.Proxier
}

var _ rest.Connecter = &ProxyREST{}

// New returns the options object of a proxy request.
func (r *ProxyREST) New() runtime.Object { return &cluster.ClusterProxyOptions{} }

// Destroy has nothing to release.
func (r *ProxyREST) Destroy() {}

// ConnectMethods are the methods that may be proxied.
func (r *ProxyREST) ConnectMethods() []string { return proxyMethods }

// NewConnectOptions says the path after proxy/ goes into ClusterProxyOptions.Path.
func (r *ProxyREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &cluster.ClusterProxyOptions{}, true, "path"
}

// Connect returns the handler that forwards the request to cluster id.
func (r *ProxyREST) Connect(ctx context.Context, id string, opts runtime.Object, responder rest.Responder) (http.Handler, error) {
	options, ok := opts.(*cluster.ClusterProxyOptions)
	if !ok {
		return nil, fmt.Errorf("invalid options object: %#v", opts)
	}
	return r.Proxier.Connect(ctx, id, options.Path, responder)
}
