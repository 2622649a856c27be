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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// AttachREST serves clusters/<name>/attach, where a member's
// switchboard-agent opens its tunnel. The request reaches it only once the
// hub and this server have authorized the caller to create
// clusters/attach for this one name: an agent may hold a tunnel for no
// other Cluster, and the tunnel carries only this Cluster's traffic.
type AttachREST struct {
	// Clusters lists Clusters from the informer cache.
	Clusters listers.ClusterLister
	// Synced says whether the cache holds a full view.
	Synced func() bool
	// Tunnels takes the tunnel.
	Tunnels *tunnel.Server
}

var _ rest.Connecter = &AttachREST{}

// New returns an empty Cluster; attach takes no options.
func (r *AttachREST) New() runtime.Object { return &cluster.Cluster{} }

// Destroy has nothing to release.
func (r *AttachREST) Destroy() {}

// ConnectMethods is POST only: the agent's upgrade request is a POST,
// which the hub authorizes as create, a verb granted more sparingly than get.
func (r *AttachREST) ConnectMethods() []string { return []string{http.MethodPost} }

// NewConnectOptions returns no options: attach takes none.
func (r *AttachREST) NewConnectOptions() (runtime.Object, bool, string) { return nil, false, "" }

// Connect returns the handler that holds the agent's tunnel for Cluster id.
func (r *AttachREST) Connect(_ context.Context, id string, _ runtime.Object, responder rest.Responder) (http.Handler, error) {
	if !r.Synced() {
		return nil, apierrors.NewServiceUnavailable("switchboard is still loading its Clusters; connect again")
	}
	cl, err := r.Clusters.Get(id)
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(cluster.Resource("clusters"), id)
	}
	if err != nil {
		return nil, err
	}
	if cl.Spec.Connection != v1alpha1.ConnectionTunnel {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("cluster %q is reached directly (spec.connection is %s), so it takes no agent; "+
			"set spec.connection to Tunnel for its switchboard-agent to connect", id, cl.Spec.Connection))
	}
	uid := cl.UID
	valid := func() bool {
		now, err := r.Clusters.Get(id)
		return err == nil && now.UID == uid && now.Spec.Connection == v1alpha1.ConnectionTunnel
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := r.Tunnels.Serve(w, req, id, valid); err != nil {
			responder.Error(err)
		}
	}), nil
}
