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
	"net/http"
	"sync/atomic"

	"k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/switchboard-io/switchboard/pkg/fleet"
	"github.com/switchboard-io/switchboard/pkg/proxy"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// HandlerChain is the server's handler chain: the generic server's, with
// the etcd gate and the proxy's query handling inside it, and one parse of
// a proxy request's member path shared by every filter around it.
func HandlerChain(storage *StorageHealth) func(http.Handler, *genericapiserver.Config) http.Handler {
	return func(handler http.Handler, gc *genericapiserver.Config) http.Handler {
		chain := genericapiserver.DefaultBuildHandlerChain(WithStorageGate(proxy.WithProxyQuery(handler), storage), gc)
		return proxy.WithMemberRequestMemo(chain)
	}
}

// IsLongRunning is the server's LongRunningFunc: proxied watches, logs -f,
// exec and port-forward are not cut by the request timeout and do not
// count against max-in-flight (see proxy.IsLongRunning), and neither are an
// agent's tunnel (clusters/<name>/attach) and fleet watches.
func IsLongRunning(r *http.Request, info *request.RequestInfo) bool {
	return proxy.IsLongRunning(r, info) || tunnel.IsAttach(info) || fleet.IsLongRunning(r, info)
}

// lateFleet serves the fleet endpoint from inside the handler chain, which
// the generic server builds before the fleet can be: New sets it.
type lateFleet struct {
	fleet atomic.Pointer[fleet.Fleet]
}

// wrap serves fleet requests once the fleet is set, and passes every other
// request to handler.
func (l *lateFleet) wrap(handler http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if f := l.fleet.Load(); f != nil && f.ServeIfFleet(w, req) {
			return
		}
		handler.ServeHTTP(w, req)
	})
}
