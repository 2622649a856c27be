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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// hubObjects are the Cluster and its credentials Secret as join found them
// on the hub; nil where there is none.
type hubObjects struct {
	cluster *v1alpha1.Cluster
	secret  *corev1.Secret
}

// inspectHub reads the Cluster and its Secret before join writes anything,
// and refuses what join must not touch: objects switchboard does not own,
// and, without Overwrite, a Cluster that points at another endpoint.
func (o *Options) inspectHub(ctx context.Context) (*hubObjects, error) {
	found := &hubObjects{}
	obj := "Cluster " + o.Name + " on the hub"
	cl, err := o.Switchboard.ClusterV1alpha1().Clusters().Get(ctx, o.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, o.explain(fmt.Errorf("reading %s: %w", obj, err), "hub")
	case !isManaged(cl):
		// Made by hand (kubectl apply): its Secret may be someone else's.
		return nil, notOwnedError(obj)
	case !sameEndpoint(cl.Spec.Endpoint, o.Endpoint) && !o.Overwrite:
		return nil, fmt.Errorf("%s already points at %s, and this join would point it at %s: "+
			"run join with --overwrite to re-point it there, or choose another name", obj, cl.Spec.Endpoint, o.Endpoint)
	default:
		found.cluster = cl
	}

	name := SecretName(o.Name)
	obj = "Secret " + o.HubNamespace + "/" + name + " on the hub"
	secret, err := o.HubClient.CoreV1().Secrets(o.HubNamespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, o.explain(fmt.Errorf("reading %s: %w", obj, err), "hub")
	case !isManaged(secret):
		return nil, notOwnedError(obj)
	default:
		found.secret = secret
	}
	return found, nil
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
