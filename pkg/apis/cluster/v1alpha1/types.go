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

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Keys of the credentials Secret that a Cluster names. They match the keys of
// kubernetes.io/service-account-token and kubernetes.io/tls Secrets, so either
// kind can be copied from a member as it is.
const (
	// SecretKeyToken holds a bearer token for the member's API server.
	SecretKeyToken = "token"
	// SecretKeyClientCert holds a PEM client certificate for the member's API server.
	SecretKeyClientCert = "tls.crt"
	// SecretKeyClientKey holds the PEM private key of SecretKeyClientCert.
	SecretKeyClientKey = "tls.key"
	// SecretKeyCABundle holds the PEM CA bundle that signs the member's serving certificate.
	SecretKeyCABundle = "ca.crt"
)

// Condition types of a Cluster.
const (
	// ConditionReady says whether the member's API server answers
	// switchboard and reports itself ready.
	ConditionReady = "Ready"
	// ConditionCredentialsValid says whether the member accepts the
	// credential in the Cluster's Secret.
	ConditionCredentialsValid = "CredentialsValid"
)

// Reasons of the Ready and CredentialsValid conditions.
const (
	// ReasonProbed: the member answered the probe (Ready, CredentialsValid True).
	ReasonProbed = "Probed"
	// ReasonNotReady: the member answered, but its /readyz fails.
	ReasonNotReady = "NotReady"
	// ReasonUnreachable: no connection to the member (refused, DNS, timeout).
	ReasonUnreachable = "Unreachable"
	// ReasonTLSError: the member's certificate was not accepted.
	ReasonTLSError = "TLSError"
	// ReasonUnauthorized: the member rejected switchboard's credential.
	ReasonUnauthorized = "Unauthorized"
	// ReasonCredentialsMissing: the Secret is missing or unusable.
	ReasonCredentialsMissing = "CredentialsMissing"
	// ReasonProbing: no probe has finished yet.
	ReasonProbing = "Probing"
	// ReasonAgentDisconnected: the Cluster is reached through a tunnel, and
	// no switchboard-agent of the member holds one (Ready and
	// AgentConnected False).
	ReasonAgentDisconnected = "AgentDisconnected"
	// ReasonAgentConnected: an agent of the member holds a tunnel
	// (AgentConnected True).
	ReasonAgentConnected = "AgentConnected"
)

// ConditionAgentConnected says whether a switchboard-agent of a member
// reached through a tunnel holds a tunnel to switchboard. Direct Clusters
// have no such condition.
const ConditionAgentConnected = "AgentConnected"

// Connection says how switchboard reaches a member's API server.
// +enum
type Connection string

const (
	// ConnectionDirect means switchboard dials the endpoint, directly or
	// through proxyURL.
	ConnectionDirect Connection = "Direct"
	// ConnectionTunnel means the member's switchboard-agent connects out to the
	// hub's API (clusters/<name>/attach) and switchboard reaches the member
	// through that connection. The hub never dials the member.
	ConnectionTunnel Connection = "Tunnel"
)

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Cluster is a member Kubernetes cluster that switchboard proxies requests to.
// Requests to clusters/<name>/proxy/<path> are forwarded to the member's API
// server as the original caller, so the member's own RBAC applies to them.
type Cluster struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata. The name is the one users put in the proxy path.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says how switchboard reaches the member's API server.
	// +required
	Spec ClusterSpec `json:"spec"`

	// status is what switchboard last observed about the member. It is written
	// by switchboard through the status subresource.
	// +optional
	Status ClusterStatus `json:"status,omitempty"`
}

// ClusterSpec says how switchboard reaches a member's API server.
type ClusterSpec struct {
	// connection says how switchboard reaches the member: Direct (the
	// default), by dialing endpoint; or Tunnel, through the connection the
	// member's switchboard-agent opens to the hub. A tunnelled Cluster takes
	// no proxyURL.
	// +optional
	// +default="Direct"
	Connection Connection `json:"connection,omitempty"`

	// endpoint is the URL of the member's API server as switchboard reaches it:
	// https, a host, an optional port and an optional path prefix, with no user
	// info, query or fragment. For example https://10.0.0.12:6443. For a
	// tunnelled Cluster, its host is the name the member's serving
	// certificate is verified against (unless tlsServerName says otherwise)
	// and the agent dials its own fixed address, whatever the host.
	// +required
	Endpoint string `json:"endpoint"`

	// credentialsSecretRef names the Secret, in the namespace switchboard runs
	// in (switchboard-system), that holds the member credential and CA bundle.
	// The Secret holds either a bearer token under "token", or a client
	// certificate and key under "tls.crt" and "tls.key", and the PEM CA bundle
	// of the member's serving certificate under "ca.crt". The credential must
	// only be allowed to impersonate users, groups, service accounts, UIDs and
	// user extras in the member.
	// +required
	CredentialsSecretRef SecretReference `json:"credentialsSecretRef"`

	// insecureSkipTLSVerify turns off verification of the member's serving
	// certificate. The connection is then open to interception; use it only
	// for tests.
	// +optional
	InsecureSkipTLSVerify bool `json:"insecureSkipTLSVerify,omitempty"`

	// tlsServerName is the name the member's serving certificate is verified
	// against, when it differs from the host in endpoint (for example when the
	// member is reached by IP address or through a tunnel). A DNS name or an IP
	// address.
	// +optional
	TLSServerName string `json:"tlsServerName,omitempty"`

	// proxyURL is the URL of the proxy that connections to the member go
	// through: http, https or socks5, with a host and an optional port. It
	// carries no credentials, path, query or fragment.
	// +optional
	ProxyURL string `json:"proxyURL,omitempty"`

	// identity says how hub callers appear in the member, with CEL
	// expressions over the caller as the hub authenticated it. Without it,
	// a caller reaches the member as itself: the same user name, UID,
	// groups and extras, so a hub caller in system:masters is in
	// system:masters in the member too. Probes use switchboard's own
	// identity and are not affected.
	// +optional
	Identity *IdentityPolicy `json:"identity,omitempty"`
}

// IdentityPolicy maps the hub caller to the identity the member sees, as
// Kubernetes' structured authentication configuration maps token claims.
// Every expression is CEL over user, the hub caller: user.username,
// user.uid, user.groups (a list of strings) and user.extra (a map of
// string to a list of strings). Expressions compile when the Cluster is
// written; each may cost at most what a ValidatingAdmissionPolicy
// expression may.
type IdentityPolicy struct {
	// rules refuse callers: each expression must be true for the caller,
	// or switchboard answers 403, naming the Cluster and the rule, and
	// sends nothing to the member. They see the hub caller, before any
	// mapping. For example !('system:masters' in user.groups).
	// +listType=atomic
	// +optional
	Rules []IdentityRule `json:"rules,omitempty"`

	// username is an expression for the user name the member sees, a
	// non-empty string; for example 'hub:' + user.username. Empty keeps
	// the caller's.
	// +optional
	Username string `json:"username,omitempty"`

	// uid is an expression for the UID the member sees, a string (empty
	// for none). Empty keeps the caller's.
	// +optional
	UID string `json:"uid,omitempty"`

	// groups is an expression for the groups the member sees, a list of
	// strings; for example user.groups.map(g, 'hub:' + g). Empty keeps the
	// caller's.
	// +optional
	Groups string `json:"groups,omitempty"`

	// extra, when set, are the only extras the member sees, each with an
	// expression for its values (a list of strings, or one string; an
	// empty list leaves the key out). Empty keeps the caller's extras.
	// +listType=map
	// +listMapKey=key
	// +optional
	Extra []IdentityExtra `json:"extra,omitempty"`
}

// IdentityRule is a CEL expression that must be true for the caller.
type IdentityRule struct {
	// expression must give a bool.
	// +required
	Expression string `json:"expression"`

	// message is what a refused caller reads.
	// +optional
	Message string `json:"message,omitempty"`
}

// IdentityExtra is one extra the member sees.
type IdentityExtra struct {
	// key of the extra.
	// +required
	Key string `json:"key"`

	// valueExpression gives its values: a list of strings, or one string.
	// +required
	ValueExpression string `json:"valueExpression"`
}

// SecretReference names a Secret in switchboard's own namespace.
type SecretReference struct {
	// name of the Secret.
	// +required
	Name string `json:"name"`
}

// ClusterStatus is what switchboard last observed about a member.
type ClusterStatus struct {
	// conditions are the latest observations of the member's state. The Ready
	// condition says whether the member's API server answers switchboard.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// kubernetesVersion is the gitVersion the member's API server reports on /version.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`

	// lastProbeTime is when switchboard last probed the member. Status is
	// written when something changes, and at least once a minute.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`

	// probeLatency is the smoothed time the member takes to answer a probe.
	// +optional
	ProbeLatency *metav1.Duration `json:"probeLatency,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterList is a list of Clusters.
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the Clusters.
	Items []Cluster `json:"items"`
}

// +k8s:conversion-gen:explicit-from=net/url.Values
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// ClusterProxyOptions are the options of a request to clusters/<name>/proxy.
type ClusterProxyOptions struct {
	metav1.TypeMeta `json:",inline"`

	// path is the path on the member's API server the request goes to.
	// +optional
	Path string `json:"path,omitempty"`
}
