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
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

func TestUnjoinRemovesWhatJoinCreated(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name        string
		withMember  bool
		wantChanges func(token string) []string
		wantWrites  func(token string) []string
	}{{
		name:       "hub and member",
		withMember: true,
		wantChanges: func(token string) []string {
			return []string{
				"deleted Cluster prod",
				"deleted Secret switchboard-system/prod-credentials on the hub",
				"deleted ValidatingAdmissionPolicyBinding " + GuardName,
				"deleted ValidatingAdmissionPolicy " + GuardName,
				"deleted ClusterRoleBinding switchboard:impersonator",
				"deleted ClusterRole switchboard:impersonator",
				"deleted Secret switchboard-system/" + token,
				"deleted ServiceAccount switchboard-system/switchboard-impersonator",
				"deleted Namespace switchboard-system",
			}
		},
		wantWrites: func(token string) []string {
			return []string{
				"delete validatingadmissionpolicybindings " + GuardName,
				"delete validatingadmissionpolicies " + GuardName,
				"delete clusterrolebindings switchboard:impersonator",
				"delete clusterroles switchboard:impersonator",
				"delete secrets " + token,
				"delete serviceaccounts switchboard-impersonator",
				"delete namespaces switchboard-system",
				"delete secrets prod-credentials",
				"delete clusters prod",
			}
		},
	}, {
		name: "hub only",
		wantChanges: func(string) []string {
			return []string{"deleted Cluster prod", "deleted Secret switchboard-system/prod-credentials on the hub"}
		},
		wantWrites: func(string) []string { return []string{"delete secrets prod-credentials", "delete clusters prod"} },
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := joined(t)
			token := f.tokenSecret().Name

			changes, err := Unjoin(ctx, f.unjoinOptions(tc.withMember))
			if err != nil {
				t.Fatal(err)
			}
			assertChanges(t, changes, tc.wantChanges(token)...)
			assertWrites(t, append(f.memberWrites(), f.hubWrites()...), tc.wantWrites(token)...)

			if _, err := f.sb.ClusterV1alpha1().Clusters().Get(ctx, testName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("Cluster: %v", err)
			}
			_, err = f.member.RbacV1().ClusterRoles().Get(ctx, ClusterRoleName, metav1.GetOptions{})
			if tc.withMember != apierrors.IsNotFound(err) {
				t.Errorf("ClusterRole after unjoin (member %v): %v", tc.withMember, err)
			}

			// Again: nothing left to do.
			f.clearActions()
			changes, err = Unjoin(ctx, f.unjoinOptions(tc.withMember))
			if err != nil || len(changes) != 0 {
				t.Errorf("second unjoin: %q, %v", changeStrings(changes), err)
			}
			assertNoWrites(t, f)
		})
	}
}

func TestUnjoinKeepsWhatItDoesNotOwn(t *testing.T) {
	ns, sa, role, binding := memberObjects()
	token := tokenSecretObject()
	token.Name = TokenSecretPrefix + "abcde"
	hubSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: SecretName(testName), Namespace: DefaultHubNamespace}}
	cluster := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: testName}}

	cases := []struct {
		name        string
		member, hub []runtime.Object
		sb          []runtime.Object
		want        []string
		wantWrites  []string
	}{{
		name:   "nothing labelled",
		member: []runtime.Object{unlabelled(ns.DeepCopy()), unlabelled(sa.DeepCopy()), unlabelled(role.DeepCopy()), unlabelled(binding.DeepCopy())},
		hub:    []runtime.Object{hubSecret.DeepCopy()},
		sb:     []runtime.Object{cluster.DeepCopy()},
		want: []string{
			"kept (not managed by switchboard) Cluster prod",
			"kept (not managed by switchboard) Secret switchboard-system/prod-credentials on the hub",
			"kept (not managed by switchboard) ClusterRoleBinding switchboard:impersonator",
			"kept (not managed by switchboard) ClusterRole switchboard:impersonator",
			"kept (not managed by switchboard) ServiceAccount switchboard-system/switchboard-impersonator",
			"kept (not managed by switchboard) Namespace switchboard-system",
		},
	}, {
		name:   "an administrator's namespace and binding around switchboard's objects",
		member: []runtime.Object{unlabelled(ns.DeepCopy()), sa.DeepCopy(), role.DeepCopy(), unlabelled(binding.DeepCopy()), token.DeepCopy()},
		want: []string{
			"kept (not managed by switchboard) ClusterRoleBinding switchboard:impersonator",
			"deleted ClusterRole switchboard:impersonator",
			"deleted Secret switchboard-system/" + token.Name,
			"deleted ServiceAccount switchboard-system/switchboard-impersonator",
			"kept (not managed by switchboard) Namespace switchboard-system",
		},
		wantWrites: []string{
			"delete clusterroles switchboard:impersonator",
			"delete secrets " + token.Name,
			"delete serviceaccounts switchboard-impersonator",
		},
	}, {
		name:   "objects already being deleted are skipped",
		member: []runtime.Object{terminating(ns.DeepCopy()), terminating(sa.DeepCopy()), role.DeepCopy()},
		hub:    []runtime.Object{terminating(managedHubSecret())},
		sb:     []runtime.Object{terminating(managedCluster())},
		want:   []string{"deleted ClusterRole switchboard:impersonator"},
		wantWrites: []string{
			"delete clusterroles switchboard:impersonator",
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.member...)
			for _, obj := range tc.hub {
				if err := f.hub.Tracker().Add(obj); err != nil {
					t.Fatal(err)
				}
			}
			for _, obj := range tc.sb {
				if err := f.clusters.Add(obj); err != nil {
					t.Fatal(err)
				}
			}
			changes, err := Unjoin(context.Background(), f.unjoinOptions(true))
			if err != nil {
				t.Fatal(err)
			}
			assertChanges(t, changes, tc.want...)
			assertWrites(t, append(f.memberWrites(), f.hubWrites()...), tc.wantWrites...)
		})
	}
}

func managedHubSecret() *corev1.Secret {
	return &corev1.Secret{ObjectMeta: managedMeta(SecretName(testName), DefaultHubNamespace)}
}

func managedCluster() *v1alpha1.Cluster {
	return &v1alpha1.Cluster{ObjectMeta: managedMeta(testName, "")}
}

func TestUnjoinHubNamespace(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.HubNamespace = "team-a"
	if _, err := f.joinWith(o); err != nil {
		t.Fatal(err)
	}
	f.clearActions()
	uo := f.unjoinOptions(false)
	uo.HubNamespace = "team-a"
	changes, err := Unjoin(context.Background(), uo)
	if err != nil {
		t.Fatal(err)
	}
	assertChanges(t, changes, "deleted Cluster prod", "deleted Secret team-a/prod-credentials on the hub")
	assertWrites(t, f.memberWrites())
}

// The same member joined under two names: unjoining one keeps the member
// identity the other still uses.
func TestUnjoinKeepsAMemberIdentityAnotherClusterUses(t *testing.T) {
	ctx := context.Background()
	f := joined(t)
	o := f.options()
	o.Name = "prod-again"
	if _, err := f.joinWith(o); err != nil {
		t.Fatalf("joining the member a second time: %v", err)
	}
	f.clearActions()

	uo := f.unjoinOptions(true)
	uo.Name = "prod-again"
	changes, err := Unjoin(ctx, uo)
	if err != nil {
		t.Fatal(err)
	}
	assertChanges(t, changes,
		"deleted Cluster prod-again",
		"deleted Secret switchboard-system/prod-again-credentials on the hub",
		"kept the member's switchboard objects (switchboard-system, switchboard-impersonator, switchboard:impersonator): "+
			"Cluster prod on the hub still uses their token")
	assertWrites(t, append(f.memberWrites(), f.hubWrites()...), "delete secrets prod-again-credentials", "delete clusters prod-again")
	if f.tokenSecret() == nil {
		t.Error("the token Cluster prod uses is gone")
	}

	// Once prod is unjoined too, nothing uses them: they go.
	changes, err = Unjoin(ctx, f.unjoinOptions(true))
	if err != nil {
		t.Fatal(err)
	}
	if got := changeStrings(changes); len(got) != 9 || got[2] != "deleted ValidatingAdmissionPolicyBinding "+GuardName || got[8] != "deleted Namespace switchboard-system" {
		t.Errorf("last unjoin: %q", got)
	}
}

func TestUnjoinDryRun(t *testing.T) {
	for _, tc := range []struct {
		mode       DryRun
		note       string
		wantWrites []string
	}{
		{mode: DryRunClient, note: " (dry run)"},
		{mode: DryRunServer, note: " (server dry run)", wantWrites: []string{
			"delete validatingadmissionpolicybindings " + GuardName,
			"delete validatingadmissionpolicies " + GuardName,
			"delete clusterrolebindings switchboard:impersonator",
			"delete clusterroles switchboard:impersonator",
			"delete secrets " + TokenSecretPrefix + "00001",
			"delete serviceaccounts switchboard-impersonator",
			"delete namespaces switchboard-system",
			"delete secrets prod-credentials",
			"delete clusters prod",
		}},
	} {
		t.Run(tc.note, func(t *testing.T) {
			f := joined(t)
			var notDry []string
			for _, c := range []*k8stesting.Fake{&f.member.Fake, &f.hub.Fake, &f.sb.Fake} {
				c.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
					if d := a.(k8stesting.DeleteActionImpl).DeleteOptions.DryRun; len(d) != 1 || d[0] != metav1.DryRunAll {
						notDry = append(notDry, a.GetResource().Resource)
					}
					// As a dry run on a real server: answered, not stored.
					return true, nil, nil
				})
			}
			uo := f.unjoinOptions(true)
			uo.DryRun = tc.mode
			changes, err := Unjoin(context.Background(), uo)
			if err != nil {
				t.Fatal(err)
			}
			token := f.tokenSecret().Name
			assertChanges(t, changes,
				"deleted Cluster prod"+tc.note,
				"deleted Secret switchboard-system/prod-credentials on the hub"+tc.note,
				"deleted ValidatingAdmissionPolicyBinding "+GuardName+tc.note,
				"deleted ValidatingAdmissionPolicy "+GuardName+tc.note,
				"deleted ClusterRoleBinding switchboard:impersonator"+tc.note,
				"deleted ClusterRole switchboard:impersonator"+tc.note,
				"deleted Secret switchboard-system/"+token+tc.note,
				"deleted ServiceAccount switchboard-system/switchboard-impersonator"+tc.note,
				"deleted Namespace switchboard-system"+tc.note)
			assertWrites(t, append(f.memberWrites(), f.hubWrites()...), tc.wantWrites...)
			if len(notDry) > 0 {
				t.Errorf("deletes without dryRun=All: %q", notDry)
			}
			f.cluster()
		})
	}
}
