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
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilwait "k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Change is one thing join or unjoin did, or found already right.
type Change struct {
	// Object is "Kind namespace/name" or "Kind name".
	Object string
	// Action is created, corrected, deleted or unchanged.
	Action string
	// Note, when set, follows the object: " (server dry run)".
	Note string
}

func (c Change) String() string { return c.Action + " " + c.Object + c.Note }

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
// deleted); other reserved objects without the label are an error. What it
// creates, w can undo.
func ensureMemberObjects(ctx context.Context, c kubernetes.Interface, wait time.Duration, w *writer) ([]Change, error) {
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
	// A server dry run cannot create objects in a namespace it only
	// pretended to create; those are reported, not sent.
	namespacePretended := false
	switch {
	case apierrors.IsNotFound(err):
		_, err := c.CoreV1().Namespaces().Create(ctx, ns, w.create())
		w.created(err, Change{Object: obj, Action: Deleted}, func(ctx context.Context) error {
			return ignoreNotFound(c.CoreV1().Namespaces().Delete(ctx, Namespace, metav1.DeleteOptions{}))
		})
		if err != nil {
			return changes, fmt.Errorf("creating %s: %w", obj, err)
		}
		namespacePretended = w.dryRun == DryRunServer
		changes = append(changes, w.change(obj, Created, ""))
	case err != nil:
		return changes, fmt.Errorf("reading %s: %w", obj, err)
	case isManaged(existingNS):
		changes = append(changes, Change{Object: obj, Action: Unchanged})
	default:
		changes = append(changes, Change{Object: obj, Action: Kept})
	}

	// ServiceAccount.
	obj = "ServiceAccount " + Namespace + "/" + ServiceAccountName
	existingSA, err := c.CoreV1().ServiceAccounts(Namespace).Get(ctx, ServiceAccountName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && namespacePretended:
		changes = append(changes, w.change(obj, Created, notSentInNewNamespace))
	case apierrors.IsNotFound(err):
		_, err := c.CoreV1().ServiceAccounts(Namespace).Create(ctx, sa, w.create())
		w.created(err, Change{Object: obj, Action: Deleted}, func(ctx context.Context) error {
			return ignoreNotFound(c.CoreV1().ServiceAccounts(Namespace).Delete(ctx, ServiceAccountName, metav1.DeleteOptions{}))
		})
		if err != nil {
			return changes, fmt.Errorf("creating %s: %w", obj, err)
		}
		changes = append(changes, w.change(obj, Created, ""))
	case err != nil:
		return changes, fmt.Errorf("reading %s: %w", obj, err)
	case !isManaged(existingSA):
		return changes, notOwnedError(obj)
	default:
		changes = append(changes, Change{Object: obj, Action: Unchanged})
	}

	// ClusterRole: exactly the impersonation rules.
	obj = "ClusterRole " + ClusterRoleName
	existingRole, err := c.RbacV1().ClusterRoles().Get(ctx, ClusterRoleName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err := c.RbacV1().ClusterRoles().Create(ctx, role, w.create())
		w.created(err, Change{Object: obj, Action: Deleted}, func(ctx context.Context) error {
			return ignoreNotFound(c.RbacV1().ClusterRoles().Delete(ctx, ClusterRoleName, metav1.DeleteOptions{}))
		})
		if err != nil {
			return changes, fmt.Errorf("creating %s: %w", obj, err)
		}
		changes = append(changes, w.change(obj, Created, ""))
	case err != nil:
		return changes, fmt.Errorf("reading %s: %w", obj, err)
	case !isManaged(existingRole):
		return changes, notOwnedError(obj)
	case !apiequality.Semantic.DeepEqual(existingRole.Rules, role.Rules) || existingRole.AggregationRule != nil:
		fixed := existingRole.DeepCopy()
		fixed.Rules, fixed.AggregationRule = role.Rules, nil
		if _, err := c.RbacV1().ClusterRoles().Update(ctx, fixed, w.update()); err != nil {
			return changes, fmt.Errorf("correcting %s: %w", obj, err)
		}
		changes = append(changes, w.change(obj, Corrected, ""))
		w.repaired(changes[len(changes)-1])
	default:
		changes = append(changes, Change{Object: obj, Action: Unchanged})
	}

	// ClusterRoleBinding: exactly one subject; the role reference cannot
	// change in place, so a wrong one is replaced.
	obj = "ClusterRoleBinding " + ClusterRoleName
	existingBinding, err := c.RbacV1().ClusterRoleBindings().Get(ctx, ClusterRoleName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, w.create())
		w.created(err, Change{Object: obj, Action: Deleted}, func(ctx context.Context) error {
			return ignoreNotFound(c.RbacV1().ClusterRoleBindings().Delete(ctx, ClusterRoleName, metav1.DeleteOptions{}))
		})
		if err != nil {
			return changes, fmt.Errorf("creating %s: %w", obj, err)
		}
		changes = append(changes, w.change(obj, Created, ""))
	case err != nil:
		return changes, fmt.Errorf("reading %s: %w", obj, err)
	case !isManaged(existingBinding):
		return changes, notOwnedError(obj)
	case existingBinding.RoleRef != binding.RoleRef:
		if w.dryRun == DryRunServer {
			changes = append(changes, w.change(obj, Corrected, ": not sent, as a dry run cannot delete and create it again"))
			break
		}
		if err := replaceBinding(ctx, c, existingBinding, binding); err != nil {
			return changes, fmt.Errorf("replacing %s: %w", obj, err)
		}
		changes = append(changes, Change{Object: obj, Action: Corrected})
		w.repaired(changes[len(changes)-1])
	case !apiequality.Semantic.DeepEqual(existingBinding.Subjects, binding.Subjects):
		fixed := existingBinding.DeepCopy()
		fixed.Subjects = binding.Subjects
		if _, err := c.RbacV1().ClusterRoleBindings().Update(ctx, fixed, w.update()); err != nil {
			return changes, fmt.Errorf("correcting %s: %w", obj, err)
		}
		changes = append(changes, w.change(obj, Corrected, ""))
		w.repaired(changes[len(changes)-1])
	default:
		changes = append(changes, Change{Object: obj, Action: Unchanged})
	}
	return changes, nil
}

// replaceBinding deletes old and creates want in its place: a binding's
// role reference cannot change in place. When the create fails, it puts old
// back, so that the member is not left without the binding every Cluster
// on it needs.
func replaceBinding(ctx context.Context, c kubernetes.Interface, old, want *rbacv1.ClusterRoleBinding) error {
	bindings := c.RbacV1().ClusterRoleBindings()
	if err := bindings.Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	_, err := bindings.Create(ctx, want, metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	restore := old.DeepCopy()
	restore.ResourceVersion, restore.UID = "", ""
	restoreCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if _, rerr := bindings.Create(restoreCtx, restore, metav1.CreateOptions{}); rerr != nil && !apierrors.IsAlreadyExists(rerr) {
		return fmt.Errorf("%w; putting the old binding back failed too, so the member has none: %v", err, rerr)
	}
	return fmt.Errorf("%w; the old binding is back", err)
}

// notSentInNewNamespace qualifies a server dry run's change that was not
// sent, because its namespace does not exist yet.
const notSentInNewNamespace = ": not sent, as its namespace does not exist yet"

// ensureHubSecret writes the credentials Secret on the hub, or corrects its
// data; existing is what inspectHub read (nil when there is none). A
// conflict with another writer is retried on a fresh read. What it
// changes, w can put back.
func ensureHubSecret(ctx context.Context, hub kubernetes.Interface, existing *corev1.Secret, namespace, name string, data map[string][]byte, w *writer) (Change, error) {
	obj := "Secret " + namespace + "/" + name
	secrets := hub.CoreV1().Secrets(namespace)
	if existing == nil {
		want := &corev1.Secret{ObjectMeta: managedMeta(name, namespace), Type: corev1.SecretTypeOpaque, Data: data}
		_, err := secrets.Create(ctx, want, w.create())
		w.created(err, Change{Object: obj + " on the hub", Action: Deleted}, func(ctx context.Context) error {
			return ignoreNotFound(secrets.Delete(ctx, name, metav1.DeleteOptions{}))
		})
		if err != nil {
			return Change{}, fmt.Errorf("creating %s on the hub: %w", obj, err)
		}
		return w.change(obj, Created, ""), nil
	}
	if apiequality.Semantic.DeepEqual(existing.Data, data) {
		return Change{Object: obj, Action: Unchanged}, nil
	}
	previous := existing.Data
	// Recorded first: an update whose outcome is unknown may have happened.
	mark := w.mark()
	w.onUndo(Change{Object: obj + " on the hub", Action: "restored"}, func(ctx context.Context) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			s, err := secrets.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Data = previous
			_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
			return err
		})
	})
	if err := updateOnConflict(ctx, existing.DeepCopy(), func(ctx context.Context) (*corev1.Secret, error) {
		return secrets.Get(ctx, name, metav1.GetOptions{})
	}, func(ctx context.Context, s *corev1.Secret) error {
		s.Data = data
		_, err := secrets.Update(ctx, s, w.update())
		return err
	}); err != nil {
		if refused(err) {
			w.keep(mark)
		}
		return Change{}, fmt.Errorf("correcting %s on the hub: %w", obj, err)
	}
	return w.change(obj, Corrected, ""), nil
}

// updateOnConflict applies edit to obj and writes it; when the write
// conflicts with another writer (switchboard writes Cluster status all the
// time), it reads the object again and applies edit anew, as
// retry.RetryOnConflict does.
func updateOnConflict[T any](ctx context.Context, obj T, get func(context.Context) (T, error), edit func(context.Context, T) error) error {
	first := true
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			fresh, err := get(ctx)
			if err != nil {
				return err
			}
			obj = fresh
		}
		first = false
		return edit(ctx, obj)
	})
}

// refused says whether err is the server's answer: the write did not
// happen. Other errors (a broken connection, an ended context) leave it
// unknown.
func refused(err error) bool {
	_, ok := err.(apierrors.APIStatus) //nolint:errorlint // as client-go returns them.
	return ok
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
