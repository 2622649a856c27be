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

package cluster

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Cluster is a member cluster that switchboard proxies requests to.
type Cluster struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	Spec   ClusterSpec
	Status ClusterStatus
}

// ClusterSpec says how to reach a member's API server.
type ClusterSpec struct {
	// Connection says how the member is reached: Direct or Tunnel.
	Connection Connection
	// Endpoint is the https URL of the member's API server.
	Endpoint string
	// CredentialsSecretRef names the hub Secret with the member credential and CA bundle.
	CredentialsSecretRef SecretReference
	// InsecureSkipTLSVerify turns off verification of the member's serving certificate.
	InsecureSkipTLSVerify bool
	// TLSServerName is the server name to verify the member's certificate against.
	TLSServerName string
	// ProxyURL is the URL of an http, https or socks5 proxy on the way to the member.
	ProxyURL string
	// Identity says how hub callers appear in the member; nil: as they are.
	Identity *IdentityPolicy
}

// IdentityPolicy maps the hub caller to the identity the member sees, with
// CEL expressions over the caller, user.
type IdentityPolicy struct {
	// Rules must all be true for the caller, or the request is refused.
	Rules []IdentityRule
	// Username, UID and Groups give what the member sees; empty keeps the caller's.
	Username string
	UID      string
	Groups   string
	// Extra, when set, are the only extras the member sees.
	Extra []IdentityExtra
}

// IdentityRule is a CEL expression that must be true for the caller.
type IdentityRule struct {
	Expression string
	Message    string
}

// IdentityExtra is one extra the member sees.
type IdentityExtra struct {
	Key             string
	ValueExpression string
}

// Connection says how switchboard reaches a member's API server.
type Connection string

// The ways to reach a member.
const (
	// ConnectionDirect: switchboard dials the endpoint.
	ConnectionDirect Connection = "Direct"
	// ConnectionTunnel: through the member's switchboard-agent.
	ConnectionTunnel Connection = "Tunnel"
)

// SecretReference names a Secret in switchboard's own namespace.
type SecretReference struct {
	Name string
}

// ClusterStatus is what switchboard last observed about the member.
type ClusterStatus struct {
	Conditions        []metav1.Condition
	KubernetesVersion string
	LastProbeTime     *metav1.Time
	ProbeLatency      *metav1.Duration
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterList is a list of Clusters.
type ClusterList struct {
	metav1.TypeMeta
	metav1.ListMeta

	Items []Cluster
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterProxyOptions are the options of a clusters/proxy request.
type ClusterProxyOptions struct {
	metav1.TypeMeta

	// Path is the path on the member's API server.
	Path string
}
