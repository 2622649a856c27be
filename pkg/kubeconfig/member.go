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

// Package kubeconfig turns a kubeconfig for the hub into one for a member
// cluster reached through switchboard, or for the fleet endpoint.
package kubeconfig

import (
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ProxyPath is the path, on the hub, of member name's proxy.
func ProxyPath(name string) string {
	return "/apis/cluster.switchboard.io/v1alpha1/clusters/" + name + "/proxy"
}

// FleetName is the name, in fleets/<name>/proxy, of the fleet of every member.
const FleetName = "*"

// FleetPath is the path, on the hub, of the fleet endpoint for the Clusters
// that selector picks (a label selector; empty for every member), escaped
// as it goes into a URL: a label key's "/" is escaped twice, once so that
// it stays within the path segment (switchboard undoes it), once for the
// URL itself.
func FleetPath(selector string) string {
	name := FleetName
	if strings.TrimSpace(selector) != "" && selector != FleetName {
		name = url.PathEscape(strings.ReplaceAll(selector, "/", "%2F"))
	}
	return "/apis/cluster.switchboard.io/v1alpha1/fleets/" + name + "/proxy"
}

// ForMember returns a kubeconfig for member cluster, made from context
// hubContext of hub (the current context when empty). It keeps the hub's
// credentials, so the user's own identity applies in the member, and
// appends the proxy path to the hub's server URL. The result has one
// context, named contextName (default "<hub context>-<cluster>"), which is
// current. hub is not changed.
func ForMember(hub *clientcmdapi.Config, hubContext, cluster, contextName string) (*clientcmdapi.Config, error) {
	if msgs := validation.IsDNS1123Subdomain(cluster); len(msgs) > 0 {
		return nil, fmt.Errorf("%q is not a valid cluster name: %s", cluster, strings.Join(msgs, "; "))
	}
	return throughHub(hub, hubContext, cluster, ProxyPath(cluster), contextName)
}

// ForFleet returns a kubeconfig for the fleet endpoint of the Clusters
// that selector picks (empty: every member), as ForMember does for one
// member. Its default context name is "<hub context>-fleet".
func ForFleet(hub *clientcmdapi.Config, hubContext, selector, contextName string) (*clientcmdapi.Config, error) {
	if _, err := labels.Parse(selector); err != nil {
		return nil, fmt.Errorf("%q is not a label selector: %w", selector, err)
	}
	return throughHub(hub, hubContext, "fleet", FleetPath(selector), contextName)
}

// throughHub is hub's context hubContext with escapedPath appended to its
// server URL, as one context named contextName, or <hub context>-suffix.
func throughHub(hub *clientcmdapi.Config, hubContext, suffix, escapedPath, contextName string) (*clientcmdapi.Config, error) {
	if hubContext == "" {
		hubContext = hub.CurrentContext
	}
	if hubContext == "" {
		return nil, fmt.Errorf("the hub kubeconfig has no current context; name one")
	}
	ctx, ok := hub.Contexts[hubContext]
	if !ok || ctx == nil {
		return nil, fmt.Errorf("the hub kubeconfig has no context %q", hubContext)
	}
	server, ok := hub.Clusters[ctx.Cluster]
	if !ok || server == nil {
		return nil, fmt.Errorf("context %q names cluster %q, which the hub kubeconfig does not have", hubContext, ctx.Cluster)
	}
	auth, ok := hub.AuthInfos[ctx.AuthInfo]
	if !ok || auth == nil {
		return nil, fmt.Errorf("context %q names user %q, which the hub kubeconfig does not have", hubContext, ctx.AuthInfo)
	}
	u, err := url.Parse(server.Server)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("the hub server %q of context %q is not a URL", server.Server, hubContext)
	}
	if strings.Contains(u.Path, "/apis/cluster.switchboard.io/") {
		return nil, fmt.Errorf("context %q already points through switchboard (%s); use a context for the hub itself", hubContext, server.Server)
	}
	joined := strings.TrimSuffix(u.EscapedPath(), "/") + escapedPath
	if u.Path, err = url.PathUnescape(joined); err != nil {
		return nil, err
	}
	u.RawPath = joined

	if contextName == "" {
		contextName = hubContext + "-" + suffix
	}
	member := server.DeepCopy()
	member.Server = u.String()
	out := clientcmdapi.NewConfig()
	out.Clusters[contextName] = member
	out.AuthInfos[contextName] = auth.DeepCopy()
	out.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName, Namespace: ctx.Namespace}
	out.CurrentContext = contextName
	return out, nil
}
