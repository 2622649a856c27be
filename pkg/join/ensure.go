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
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilwait "k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Change is one thing join or unjoin did, or found already right.
type Change struct {
	// Object is "Kind namespace/name" or "Kind name".
	Object string
	// Action is created, corrected, deleted or unchanged.
	Action string
}

func (c Change) String() string { return c.Action + " " + c.Object }

// Actions join and unjoin report.
const (
	Created   = "created"
	Corrected = "corrected"
	Deleted   = "deleted"
	Unchanged = "unchanged"
	// Kept is for objects switchboard found but does not own, which it
	// neither changes nor deletes.
	Kept = "kept (not managed by switchboard)"
)

// isManaged says whether switchboard owns an object.
func isManaged(meta metav1.Object) bool {
	return meta.GetLabels()[ManagedByLabel] == ManagedByValue
}

// notOwnedError refuses to touch an object with a reserved name that
// switchboard did not make.
func notOwnedError(object string) error {
	return fmt.Errorf("%s exists but is not managed by switchboard (no label %s=%s): delete it, or add the label to let switchboard manage it",
		object, ManagedByLabel, ManagedByValue)
}

// ensureMemberObjects creates the namespace, service account, cluster role
// and binding in a member, or corrects them when they drifted. A namespace
// that exists without switchboard's label is used as it is (and never
// deleted); other reserved objects without the label are an error.
func ensureMemberObjects(ctx context.Context, c kubernetes.Interface, wait time.Duration) ([]Change, error) {
	ns, sa, role, binding := MemberObjects()
	var changes []Change

	// Namespace. One still being deleted (an unjoin just before) is waited for.
	obj := "Namespace " + Namespace
	existingNS, err := c.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	if err == nil && existingNS.DeletionTimestamp != nil {
		err = utilwait.PollUntilContextTimeout(ctx, 500*time.Millisecond, wait, true, func(ctx context.Context) (bool, error) {
			_, err := c.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, err
		})
		if err != nil {
			if utilwait.Interrupted(err) && ctx.Err() == nil {
				return changes, fmt.Errorf("%s is being deleted and was not gone within %s; join again once it is", obj, wait)
			}
			return changes, fmt.Errorf("waiting for %s to be deleted: %w", obj, err)
		}
		existingNS, err = c.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
	}
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return changes, fmt.Errorf("creating %s: %w", obj, err)
		}
		changes = append(changes, Change{obj, Created})
	case err != nil:
		return changes, fmt.Errorf("reading %s: %w", obj, err)
	case isManaged(existingNS):
		changes = append(changes, Change{obj, Unchanged})
	default:
		changes = append(changes, Change{obj, Kept})
	}

	// ServiceAccount.
	obj = "ServiceAccount " + Namespace + "/" + ServiceAccountName
	existingSA, err := c.CoreV1().ServiceAccounts(Namespace).Get(ctx, ServiceAccountName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.CoreV1().ServiceAccounts(Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			return changes, fmt.Errorf("creating %s: %w", obj, err)
		}
		changes = append(changes, Change{obj, Created})
	case err != nil:
		return changes, fmt.Errorf("reading %s: %w", obj, err)
	case !isManaged(existingSA):
		return changes, notOwnedError(obj)
	default:
		changes = append(changes, Change{obj, Unchanged})
	}

	// ClusterRole: exactly the impersonation rules.
	obj = "ClusterRole " + ClusterRoleName
	existingRole, err := c.RbacV1().ClusterRoles().Get(ctx, ClusterRoleName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			return changes, fmt.Errorf("creating %s: %w", obj, err)
		}
		changes = append(changes, Change{obj, Created})
	case err != nil:
		return changes, fmt.Errorf("reading %s: %w", obj, err)
	case !isManaged(existingRole):
		return changes, notOwnedError(obj)
	case !apiequality.Semantic.DeepEqual(existingRole.Rules, role.Rules) || existingRole.AggregationRule != nil:
		fixed := existingRole.DeepCopy()
		fixed.Rules, fixed.AggregationRule = role.Rules, nil
		if _, err := c.RbacV1().ClusterRoles().Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
			return changes, fmt.Errorf("correcting %s: %w", obj, err)
		}
		changes = append(changes, Change{obj, Corrected})
	default:
		changes = append(changes, Change{obj, Unchanged})
	}

	// ClusterRoleBinding: exactly one subject; the role reference cannot
	// change in place, so a wrong one is replaced.
	obj = "ClusterRoleBinding " + ClusterRoleName
	existingBinding, err := c.RbacV1().ClusterRoleBindings().Get(ctx, ClusterRoleName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			return changes, fmt.Errorf("creating %s: %w", obj, err)
		}
		changes = append(changes, Change{obj, Created})
	case err != nil:
		return changes, fmt.Errorf("reading %s: %w", obj, err)
	case !isManaged(existingBinding):
		return changes, notOwnedError(obj)
	case existingBinding.RoleRef != binding.RoleRef:
		if err := c.RbacV1().ClusterRoleBindings().Delete(ctx, ClusterRoleName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return changes, fmt.Errorf("replacing %s: %w", obj, err)
		}
		if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			return changes, fmt.Errorf("replacing %s: %w", obj, err)
		}
		changes = append(changes, Change{obj, Corrected})
	case !apiequality.Semantic.DeepEqual(existingBinding.Subjects, binding.Subjects):
		fixed := existingBinding.DeepCopy()
		fixed.Subjects = binding.Subjects
		if _, err := c.RbacV1().ClusterRoleBindings().Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
			return changes, fmt.Errorf("correcting %s: %w", obj, err)
		}
		changes = append(changes, Change{obj, Corrected})
	default:
		changes = append(changes, Change{obj, Unchanged})
	}
	return changes, nil
}

// ensureHubSecret writes the credentials Secret on the hub, or corrects its data.
func ensureHubSecret(ctx context.Context, hub kubernetes.Interface, namespace, name string, data map[string][]byte) (Change, error) {
	obj := "Secret " + namespace + "/" + name
	want := &corev1.Secret{ObjectMeta: managedMeta(name, namespace), Type: corev1.SecretTypeOpaque, Data: data}
	existing, err := hub.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := hub.CoreV1().Secrets(namespace).Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return Change{}, fmt.Errorf("creating %s on the hub: %w", obj, err)
		}
		return Change{obj, Created}, nil
	case err != nil:
		return Change{}, fmt.Errorf("reading %s on the hub: %w", obj, err)
	case !isManaged(existing):
		return Change{}, notOwnedError(obj + " on the hub")
	case apiequality.Semantic.DeepEqual(existing.Data, data):
		return Change{obj, Unchanged}, nil
	default:
		fixed := existing.DeepCopy()
		fixed.Data = data
		if _, err := hub.CoreV1().Secrets(namespace).Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
			return Change{}, fmt.Errorf("correcting %s on the hub: %w", obj, err)
		}
		return Change{obj, Corrected}, nil
	}
}
