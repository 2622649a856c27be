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

package tunnel

import (
	"context"
	"net"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/reach"
)

// Dialers reaches tunnelled Clusters through the Server and every other
// Cluster through Network.
type Dialers struct {
	Tunnels *Server
	Network reach.Dialers
}

var _ reach.Dialers = Dialers{}

// DialerFor returns the Dialer of the Cluster's connection. A tunnelled
// Cluster's Dialer looks for a tunnel at each dial, so the transport built
// with it outlives its agents' reconnects.
func (d Dialers) DialerFor(cl *v1alpha1.Cluster) (reach.Dialer, error) {
	if cl.Spec.Connection != v1alpha1.ConnectionTunnel {
		return d.Network.DialerFor(cl)
	}
	name := cl.Name
	return reach.DialerFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.Tunnels.Dial(ctx, name)
	}), nil
}
