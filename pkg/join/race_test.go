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
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// onceBefore runs act once, the first time the member sees verb on
// resource, and lets the request go on.
func onceBefore(f *fixture, verb, resource string, act func()) {
	done := false
	f.member.PrependReactor(verb, resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		if !done {
			done = true
			act()
		}
		return false, nil, nil
	})
}

// A Cluster and Secret made by hand, without switchboard's label, after
// join read the hub and before it writes there (during the token wait):
// join must neither take them over nor, when it fails, delete them.
func TestJoinDoesNotAdoptHubObjectsMadeWhileItRuns(t *testing.T) {
	f := newFixture(t)
	f.verifyErr = errors.New("verify fails")
	const elsewhere = "https://elsewhere.example:6443"
	onceBefore(f, "create", "secrets", func() {
		ctx := context.Background()
		if _, err := f.sb.ClusterV1alpha1().Clusters().Create(ctx, &v1alpha1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: testName},
			Spec: v1alpha1.ClusterSpec{Endpoint: elsewhere,
				CredentialsSecretRef: v1alpha1.SecretReference{Name: SecretName(testName)}},
		}, metav1.CreateOptions{}); err != nil {
			t.Errorf("hand-made Cluster: %v", err)
		}
		if _, err := f.hub.CoreV1().Secrets(DefaultHubNamespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: SecretName(testName), Namespace: DefaultHubNamespace},
			Data:       map[string][]byte{"token": []byte("someone-elses")},
		}, metav1.CreateOptions{}); err != nil {
			t.Errorf("hand-made Secret: %v", err)
		}
	})

	if _, err := f.join(); err == nil {
		t.Fatal("join succeeded over objects made while it ran")
	}
	ctx := context.Background()
	cl, err := f.sb.ClusterV1alpha1().Clusters().Get(ctx, testName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the hand-made Cluster is gone: %v", err)
	}
	if cl.Spec.Endpoint != elsewhere || cl.Labels[ManagedByLabel] != "" {
		t.Errorf("join took the hand-made Cluster over: endpoint %s, labels %v", cl.Spec.Endpoint, cl.Labels)
	}
	s, err := f.hub.CoreV1().Secrets(DefaultHubNamespace).Get(ctx, SecretName(testName), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the hand-made Secret is gone: %v", err)
	}
	if string(s.Data["token"]) != "someone-elses" || s.Labels[ManagedByLabel] != "" {
		t.Errorf("join took the hand-made Secret over: token %q, labels %v", s.Data["token"], s.Labels)
	}
}

// A ClusterRole of the reserved name that appears in the member after join
// read it (a second join, an administrator) is not join's to take over or
// to delete.
func TestJoinDoesNotAdoptAMemberRoleMadeWhileItRuns(t *testing.T) {
	f := newFixture(t)
	onceBefore(f, "create", "namespaces", func() {
		if err := f.member.Tracker().Create(rbacv1.SchemeGroupVersion.WithResource("clusterroles"), &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: ClusterRoleName},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}},
		}, "", metav1.CreateOptions{FieldManager: "admin"}); err != nil {
			t.Errorf("hand-made role: %v", err)
		}
	})

	if _, err := f.join(); err == nil {
		t.Fatal("join succeeded over a ClusterRole made while it ran")
	}
	r, err := f.member.RbacV1().ClusterRoles().Get(context.Background(), ClusterRoleName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the hand-made ClusterRole is gone: %v", err)
	}
	if len(r.Rules) != 1 || r.Rules[0].Resources[0] != "pods" || r.Labels[ManagedByLabel] != "" {
		t.Errorf("join took the hand-made ClusterRole over: rules %v, labels %v", r.Rules, r.Labels)
	}
}
