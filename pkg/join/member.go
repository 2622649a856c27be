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
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
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

// EnsureImpersonator creates (or leaves as they are) the member objects and
// waits, up to timeout, for the token Secret to be filled.
func EnsureImpersonator(ctx context.Context, member kubernetes.Interface, timeout time.Duration) (*Credential, error) {
	ns, sa, role, binding := MemberObjects()
	creates := []func() error{
		func() error {
			_, err := member.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := member.CoreV1().ServiceAccounts(Namespace).Create(ctx, sa, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := member.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := member.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range creates {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}

	secret, err := findTokenSecret(ctx, member)
	if err != nil {
		return nil, err
	}
	if secret == nil {
		if secret, err = member.CoreV1().Secrets(Namespace).Create(ctx, TokenSecret(), metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	var cred *Credential
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		s, err := member.CoreV1().Secrets(Namespace).Get(ctx, secret.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(s.Data[corev1.ServiceAccountTokenKey]) == 0 || len(s.Data[corev1.ServiceAccountRootCAKey]) == 0 {
			return false, nil
		}
		cred = &Credential{Token: s.Data[corev1.ServiceAccountTokenKey], CACert: s.Data[corev1.ServiceAccountRootCAKey]}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the token Secret %s/%s was not filled within %s (is the member's token controller, part of kube-controller-manager, running?): %w",
			Namespace, secret.Name, timeout, err)
	}
	return cred, nil
}

// findTokenSecret returns switchboard's token Secret in the member, if any.
func findTokenSecret(ctx context.Context, member kubernetes.Interface) (*corev1.Secret, error) {
	list, err := member.CoreV1().Secrets(Namespace).List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		s := &list.Items[i]
		if s.Type == corev1.SecretTypeServiceAccountToken && s.Annotations[corev1.ServiceAccountNameKey] == ServiceAccountName {
			return s, nil
		}
	}
	return nil, nil
}
