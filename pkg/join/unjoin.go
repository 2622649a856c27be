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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	clientset "github.com/switchboard-io/switchboard/pkg/generated/clientset/versioned"
)

// UnjoinOptions say which member to remove.
type UnjoinOptions struct {
	Name         string
	HubNamespace string
	HubClient    kubernetes.Interface
	Switchboard  clientset.Interface
	// MemberClient, when set, also removes switchboard's objects from the
	// member; without it only the hub side goes.
	MemberClient kubernetes.Interface
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
// already gone, so it is safe to run twice.
func Unjoin(ctx context.Context, o UnjoinOptions) ([]Change, error) {
	if o.HubNamespace == "" {
		o.HubNamespace = DefaultHubNamespace
	}
	del := metav1.DeleteOptions{}
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
	if m := o.MemberClient; m != nil {
		objects = append(objects,
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
		token, err := findTokenSecret(ctx, m)
		if err != nil {
			return nil, err
		}
		if token != nil {
			name := token.Name
			objects = append(objects, managedObject{"Secret " + Namespace + "/" + name,
				func(ctx context.Context) (metav1.Object, error) {
					return m.CoreV1().Secrets(Namespace).Get(ctx, name, metav1.GetOptions{})
				},
				func(ctx context.Context) error { return m.CoreV1().Secrets(Namespace).Delete(ctx, name, del) }})
		}
		objects = append(objects,
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
		current, err := obj.get(ctx)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return changes, fmt.Errorf("reading %s: %w", obj.name, err)
		}
		if current.GetDeletionTimestamp() != nil {
			// Already on its way out, from an earlier unjoin.
			continue
		}
		if !isManaged(current) {
			changes = append(changes, Change{obj.name, Kept})
			continue
		}
		if err := obj.delete(ctx); err != nil && !apierrors.IsNotFound(err) {
			return changes, fmt.Errorf("deleting %s: %w", obj.name, err)
		}
		changes = append(changes, Change{obj.name, Deleted})
	}
	return changes, nil
}
