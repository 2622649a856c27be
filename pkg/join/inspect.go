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
	"net/url"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/identity"
	"github.com/switchboard-io/switchboard/pkg/names"
)

// inspect reads every declared object before join writes anything, and
// refuses what join must not touch: objects with switchboard's names that
// it does not own (a Cluster made by hand, whose Secret may be someone
// else's), and, without Overwrite, a Cluster that points at another
// endpoint. A member namespace without the label is used as it is.
func (o *Options) inspect(ctx context.Context) ([]*target, error) {
	if err := o.awaitNamespace(ctx); err != nil {
		return nil, o.explain(err, inMember)
	}
	c := clients{member: o.MemberClient, hub: o.HubClient, sb: o.Switchboard}
	var targets []*target
	for _, obj := range o.objects(nil, nil) {
		t := c.target(obj)
		targets = append(targets, t)
		if obj.generated() {
			continue // ensureToken looks for the token Secret.
		}
		current, err := t.get(ctx)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, o.explain(fmt.Errorf("reading %s: %w", t.inErrors(), err), obj.where)
		case !isManaged(current) && !obj.usedAsFound:
			return nil, notOwnedError(t.inErrors())
		default:
			t.current = current
		}
		if c, ok := t.current.(*v1alpha1.Cluster); ok && !sameEndpoint(c.Spec.Endpoint, o.Endpoint) && !o.Overwrite {
			return nil, fmt.Errorf("%s already points at %s, and this join would point it at %s: "+
				"run join with --overwrite to re-point it there, or choose another name", t.inErrors(), c.Spec.Endpoint, o.Endpoint)
		}
		if c, ok := t.current.(*v1alpha1.Cluster); ok {
			if !sameEndpoint(c.Spec.Endpoint, o.Endpoint) {
				// With --overwrite: the Cluster moves to another member.
				o.repointed = true
			}
			o.generationBefore = c.Generation
			// What this join does not say stays as it is: applied
			// without it, a field join set before would go.
			if o.Connection == "" {
				o.Connection = c.Spec.Connection
			}
			if o.Identity == nil {
				o.Identity = identity.FromV1alpha1(c.Spec.Identity)
			}
		}
		if d, ok := t.current.(*appsv1.Deployment); ok && agentCluster(d) != o.Name {
			// One agent per member: it holds one Cluster's hub identity.
			if agentCluster(d) == "" {
				return nil, fmt.Errorf("%s in the member serves no Cluster (its container has no %s flag): delete it and join again", t.inErrors(), clusterFlag)
			}
			return nil, fmt.Errorf("%s in the member serves Cluster %q: a member has one agent, for one Cluster; "+
				"unjoin %s first, or join this member under that name", t.inErrors(), agentCluster(d), agentCluster(d))
		}
		if s, ok := t.current.(*corev1.Secret); ok && t.agent && s.Name == names.AgentHubCredential {
			o.agentCredentialFound = true
		}
	}
	return targets, nil
}

// awaitNamespace waits, up to TokenTimeout, while the member's namespace is
// being deleted (by an unjoin just before).
func (o *Options) awaitNamespace(ctx context.Context) error {
	namespaces := o.MemberClient.CoreV1().Namespaces()
	ns, err := namespaces.Get(ctx, Namespace, metav1.GetOptions{})
	if err != nil {
		// Whatever it is, inspect reads the Namespace again and reports it.
		return nil //nolint:nilerr // inspect reports it.
	}
	if ns.DeletionTimestamp == nil {
		return nil
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, o.TokenTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := namespaces.Get(ctx, Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	switch {
	case wait.Interrupted(err) && ctx.Err() == nil:
		return fmt.Errorf("namespace %s is being deleted and was not gone within %s; join again once it is", Namespace, o.TokenTimeout)
	case err != nil:
		return fmt.Errorf("waiting for Namespace %s to be deleted: %w", Namespace, err)
	}
	return nil
}

// hubAsMemberWarning warns when the member kubeconfig reaches the hub
// itself: both have the same kube-system namespace, whose UID is the
// cluster's identity. When either cannot be read, it says nothing.
func (o *Options) hubAsMemberWarning(ctx context.Context) []string {
	member, err := o.MemberClient.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil || member.UID == "" {
		return nil
	}
	hub, err := o.HubClient.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil || hub.UID != member.UID {
		return nil
	}
	return []string{fmt.Sprintf("the member kubeconfig reaches the hub itself (both have the kube-system namespace with UID %s): "+
		"Cluster %q makes the hub a member of itself", member.UID, o.Name)}
}

// sameEndpoint says whether two endpoints name the same address, whatever
// the case of the host or a trailing slash.
func sameEndpoint(a, b string) bool {
	ua, errA := url.Parse(strings.TrimSuffix(a, "/"))
	ub, errB := url.Parse(strings.TrimSuffix(b, "/"))
	if errA != nil || errB != nil {
		return a == b
	}
	return strings.EqualFold(ua.Host, ub.Host) && ua.Scheme == ub.Scheme && ua.Path == ub.Path
}
