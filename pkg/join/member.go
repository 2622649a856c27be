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

// Package join sets up a member cluster for switchboard: an identity in the
// member that may do nothing but impersonate, and its token.
package join

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names of the objects switchboard owns in a member. Users must not edit them.
const (
	Namespace          = "switchboard-system"
	ServiceAccountName = "switchboard-impersonator"
	ClusterRoleName    = "switchboard:impersonator"
	// TokenSecretPrefix begins the name of the token Secret.
	TokenSecretPrefix = "switchboard-impersonator-token-"

	// ManagedByLabel marks every object switchboard creates.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "switchboard"
)

func managedMeta(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{ManagedByLabel: ManagedByValue}}
}

// ImpersonatorRules allow impersonation and nothing else: of users, groups,
// service accounts, UIDs and every user extra.
//
// Impersonating an extra is authorized as userextras/<key>, and RBAC has no
// "userextras/*" wildcard (only "*" and "*/<subresource>"), so the second
// rule names every resource of authentication.k8s.io. With the impersonate
// verb alone that is uids and userextras/<any key>: the constrained
// impersonation modes of Kubernetes 1.35+ use other verbs
// (impersonate:user-info, impersonate-on:...), which this role does not grant.
func ImpersonatorRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"users", "groups", "serviceaccounts"}, Verbs: []string{"impersonate"}},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"impersonate"}},
	}
}

// MemberObjects are the objects switchboard needs in a member, but the
// token Secret, whose name is generated.
func MemberObjects() (*corev1.Namespace, *corev1.ServiceAccount, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding) {
	ns := &corev1.Namespace{ObjectMeta: managedMeta(Namespace, "")}
	sa := &corev1.ServiceAccount{ObjectMeta: managedMeta(ServiceAccountName, Namespace)}
	role := &rbacv1.ClusterRole{ObjectMeta: managedMeta(ClusterRoleName, ""), Rules: ImpersonatorRules()}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: managedMeta(ClusterRoleName, ""),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterRoleName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: ServiceAccountName, Namespace: Namespace}},
	}
	return ns, sa, role, binding
}

// TokenSecret is the service account token Secret the member's token
// controller fills.
func TokenSecret() *corev1.Secret {
	meta := managedMeta("", Namespace)
	meta.GenerateName = TokenSecretPrefix
	meta.Annotations = map[string]string{corev1.ServiceAccountNameKey: ServiceAccountName}
	return &corev1.Secret{ObjectMeta: meta, Type: corev1.SecretTypeServiceAccountToken}
}

// Credential is what switchboard presents to a member.
type Credential struct {
	Token  []byte
	CACert []byte
}
