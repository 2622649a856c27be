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

// Package names holds the fixed names of switchboard's objects and
// programs, on the hub and on members, in one place. Everything that
// creates, finds or documents one of them uses these.
package names

import "github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"

// On the hub.
const (
	// Namespace holds the server, its Service and the credentials Secrets.
	Namespace = "switchboard-system"
	// Server is the server's binary, its Deployment, Service and
	// container, and the component its events come from.
	Server = "switchboard-apiserver"
	// ServiceDNSName is the name the hub's aggregator dials the server
	// at, and the one its serving certificate must hold.
	ServiceDNSName = Server + "." + Namespace + ".svc"
	// APIService registers the server's group and version with the hub.
	APIService = "v1alpha1." + v1alpha1.GroupName
)

// On each member, what kubectl switchboard join creates for the credential
// that can only impersonate.
const (
	// MemberNamespace holds the impersonator's ServiceAccount and token.
	MemberNamespace = "switchboard-system"
	// Impersonator is the ServiceAccount switchboard reaches the member as.
	Impersonator = "switchboard-impersonator"
	// ImpersonatorRole is the ClusterRole and ClusterRoleBinding that let
	// the impersonator impersonate, and nothing else.
	ImpersonatorRole = "switchboard:impersonator"
	// ImpersonatorTokenPrefix begins the name of the impersonator's token Secret.
	ImpersonatorTokenPrefix = Impersonator + "-token-"
	// MemberGuard is the ValidatingAdmissionPolicy, and its binding, that
	// lets only the identity that ran join change these objects.
	MemberGuard = "switchboard-member-guard"
)

// For members reached through a tunnel.
const (
	// Agent is the agent's binary, and its Deployment and container in
	// the member.
	Agent = "switchboard-agent"
)

// AgentRole is the hub ClusterRole, and its ClusterRoleBinding, that lets
// the agent of one Cluster open that Cluster's tunnel and nothing else.
func AgentRole(cluster string) string { return "switchboard:agent:" + cluster }

// AgentHubIdentity is the hub ServiceAccount whose token the agent of one
// Cluster holds; its token Secrets' names are generated from it and
// "-token-" (the API server cuts a long prefix short).
func AgentHubIdentity(cluster string) string { return Agent + "-" + cluster }

// On a tunnelled member, next to the agent's Deployment.
const (
	// AgentServiceAccount runs the agent's pods; it needs no access to the
	// member's API.
	AgentServiceAccount = Agent
	// AgentHubCredential is the Secret with the agent's kubeconfig for the hub.
	AgentHubCredential = Agent + "-hub"
	// AgentHubKubeconfigKey is the key of that kubeconfig in the Secret.
	AgentHubKubeconfigKey = "kubeconfig"
)
