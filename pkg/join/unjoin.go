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

package join

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
)

// UnjoinOptions say which member to remove.
type UnjoinOptions struct {
	Name         string
	HubNamespace string
	HubClient    kubernetes.Interface
	Switchboard  clientset.Interface
	// MemberClient, when set, also removes switchboard's objects from the
	// member; without it only the hub side goes. They stay while another
	// Cluster on the hub uses their token.
	MemberClient kubernetes.Interface
	// DryRun, when set, deletes nothing (see DryRun).
	DryRun DryRun
}

// managedObject is one object Unjoin may delete: get reads it, delete removes it.
type managedObject struct {
	name   string
	get    func(ctx context.Context) (metav1.Object, error)
	delete func(ctx context.Context) error
}

// Unjoin removes what Join created: the Cluster and its Secret on the hub,
// and, with a member client, the member's impersonator objects. It deletes
// only objects that carry switchboard's label, and succeeds when they are
// already gone, so it is safe to run twice. The member's objects stay when
// another Cluster on the hub holds one of its tokens: that Cluster would
// stop working.
func Unjoin(ctx context.Context, o UnjoinOptions) ([]Change, error) {
	if o.HubNamespace == "" {
		o.HubNamespace = DefaultHubNamespace
	}
	w := &writer{dryRun: o.DryRun}
	del := w.delete()
	objects := []managedObject{
		{"Cluster " + o.Name,
			func(ctx context.Context) (metav1.Object, error) {
				return o.Switchboard.ClusterV1alpha1().Clusters().Get(ctx, o.Name, metav1.GetOptions{})
			},
			func(ctx context.Context) error {
				return o.Switchboard.ClusterV1alpha1().Clusters().Delete(ctx, o.Name, del)
			}},
		{"Secret " + o.HubNamespace + "/" + SecretName(o.Name) + " on the hub",
			func(ctx context.Context) (metav1.Object, error) {
				return o.HubClient.CoreV1().Secrets(o.HubNamespace).Get(ctx, SecretName(o.Name), metav1.GetOptions{})
			},
			func(ctx context.Context) error {
				return o.HubClient.CoreV1().Secrets(o.HubNamespace).Delete(ctx, SecretName(o.Name), del)
			}},
	}
	var memberObjects []managedObject
	var keep string
	if m := o.MemberClient; m != nil {
		tokens, err := tokenSecrets(ctx, m)
		if err != nil {
			return nil, err
		}
		if keep, err = o.keepMemberObjects(ctx, tokens); err != nil {
			return nil, err
		}
		memberObjects = append(memberObjects,
			managedObject{"ClusterRoleBinding " + ClusterRoleName,
				func(ctx context.Context) (metav1.Object, error) {
					return m.RbacV1().ClusterRoleBindings().Get(ctx, ClusterRoleName, metav1.GetOptions{})
				},
				func(ctx context.Context) error {
					return m.RbacV1().ClusterRoleBindings().Delete(ctx, ClusterRoleName, del)
				}},
			managedObject{"ClusterRole " + ClusterRoleName,
				func(ctx context.Context) (metav1.Object, error) {
					return m.RbacV1().ClusterRoles().Get(ctx, ClusterRoleName, metav1.GetOptions{})
				},
				func(ctx context.Context) error { return m.RbacV1().ClusterRoles().Delete(ctx, ClusterRoleName, del) }},
		)
		for _, token := range tokens {
			name := token.Name
			memberObjects = append(memberObjects, managedObject{"Secret " + Namespace + "/" + name,
				func(ctx context.Context) (metav1.Object, error) {
					return m.CoreV1().Secrets(Namespace).Get(ctx, name, metav1.GetOptions{})
				},
				func(ctx context.Context) error { return m.CoreV1().Secrets(Namespace).Delete(ctx, name, del) }})
		}
		memberObjects = append(memberObjects,
			managedObject{"ServiceAccount " + Namespace + "/" + ServiceAccountName,
				func(ctx context.Context) (metav1.Object, error) {
					return m.CoreV1().ServiceAccounts(Namespace).Get(ctx, ServiceAccountName, metav1.GetOptions{})
				},
				func(ctx context.Context) error {
					return m.CoreV1().ServiceAccounts(Namespace).Delete(ctx, ServiceAccountName, del)
				}},
			managedObject{"Namespace " + Namespace,
				func(ctx context.Context) (metav1.Object, error) {
					return m.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
				},
				func(ctx context.Context) error { return m.CoreV1().Namespaces().Delete(ctx, Namespace, del) }},
		)
	}

	var changes []Change
	for _, obj := range objects {
		change, err := removeManaged(ctx, obj, w)
		if err != nil {
			return changes, err
		}
		if change != nil {
			changes = append(changes, *change)
		}
	}
	if keep != "" {
		return append(changes, Change{
			Action: "kept",
			Object: "the member's switchboard objects (" + Namespace + ", " + ServiceAccountName + ", " + ClusterRoleName + ")",
			Note:   ": " + keep,
		}), nil
	}
	for _, obj := range memberObjects {
		change, err := removeManaged(ctx, obj, w)
		if err != nil {
			return changes, err
		}
		if change != nil {
			changes = append(changes, *change)
		}
	}
	return changes, nil
}

// removeManaged deletes obj when switchboard owns it, and says what it did;
// nil when obj is gone or already going.
func removeManaged(ctx context.Context, obj managedObject, w *writer) (*Change, error) {
	current, err := obj.get(ctx)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", obj.name, err)
	}
	if current.GetDeletionTimestamp() != nil {
		// Already on its way out, from an earlier unjoin.
		return nil, nil
	}
	if !isManaged(current) {
		return &Change{Object: obj.name, Action: Kept}, nil
	}
	if w.dryRun != DryRunClient {
		if err := obj.delete(ctx); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("deleting %s: %w", obj.name, err)
		}
	}
	change := w.change(obj.name, Deleted, "")
	return &change, nil
}

// keepMemberObjects says why the member's objects must stay, or "" when
// unjoin may delete them. They stay when the Cluster being unjoined does
// not use this member's token (the member kubeconfig is for another
// member), and while other Clusters on the hub hold one of its tokens:
// deleting them would cut those off. It reads everything before unjoin
// deletes anything.
func (o *UnjoinOptions) keepMemberObjects(ctx context.Context, tokens []corev1.Secret) (string, error) {
	if len(tokens) == 0 {
		return "", nil
	}
	issued := map[string]bool{}
	for _, t := range tokens {
		if token := t.Data[corev1.ServiceAccountTokenKey]; len(token) > 0 {
			issued[string(token)] = true
		}
	}
	secrets, err := o.HubClient.CoreV1().Secrets(o.HubNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing the credentials Secrets in %s on the hub, to see whether another Cluster uses this member's identity "+
			"(nothing was deleted): %w", o.HubNamespace, err)
	}
	using := map[string]bool{}
	for _, s := range secrets.Items {
		if issued[string(s.Data[v1alpha1.SecretKeyToken])] {
			using[s.Name] = true
		} else if s.Name == SecretName(o.Name) && isManaged(&s) {
			return fmt.Sprintf("Cluster %s on the hub uses no token of this member: is --member-kubeconfig the member it points at?", o.Name), nil
		}
	}
	if len(using) == 0 {
		return "", nil
	}
	clusters, err := o.Switchboard.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing Clusters on the hub, to see whether another one uses this member's identity (nothing was deleted): %w", err)
	}
	var names []string
	for _, c := range clusters.Items {
		if c.Name != o.Name && using[c.Spec.CredentialsSecretRef.Name] {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	return stillUsing(names) + " their token", nil
}

// stillUsing is "Cluster a on the hub still uses", or "Clusters a, b on
// the hub still use".
func stillUsing(clusters []string) string {
	if len(clusters) == 1 {
		return "Cluster " + clusters[0] + " on the hub still uses"
	}
	return "Clusters " + strings.Join(clusters, ", ") + " on the hub still use"
}
