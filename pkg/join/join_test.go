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
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

func TestJoinPreflight(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(f *fixture, o *Options)
		wantErr string
	}{{
		name:    "member may not impersonate users",
		setup:   func(f *fixture, o *Options) { f.memberDenied["impersonate users"] = true },
		wantErr: "the member kubeconfig (" + memberHost + ") may not: impersonate users",
	}, {
		name: "member misses several rights",
		setup: func(f *fixture, o *Options) {
			f.memberDenied["create namespaces"] = true
			f.memberDenied["list secrets in namespace switchboard-system"] = true
			f.memberDenied["patch clusterrolebindings.rbac.authorization.k8s.io"] = true
		},
		wantErr: "the member kubeconfig (" + memberHost + ") may not: create namespaces; " +
			"patch clusterrolebindings.rbac.authorization.k8s.io; list secrets in namespace switchboard-system",
	}, {
		name: "hub may not patch Secrets nor proxy to the cluster",
		setup: func(f *fixture, o *Options) {
			f.hubDenied["patch secrets in namespace switchboard-system"] = true
			f.hubDenied["get clusters.cluster.switchboard.io/proxy prod"] = true
		},
		wantErr: "the hub kubeconfig (" + hubHost + ") may not: patch secrets in namespace switchboard-system; " +
			"get clusters.cluster.switchboard.io/proxy prod",
	}, {
		name: "hub checks use the hub namespace",
		setup: func(f *fixture, o *Options) {
			o.HubNamespace = "team-a"
			f.hubDenied["create secrets in namespace team-a"] = true
		},
		wantErr: "the hub kubeconfig (" + hubHost + ") may not: create secrets in namespace team-a",
	}, {
		name:  "switchboard not installed",
		setup: func(f *fixture, o *Options) { f.hubDiscovery().Resources = nil },
		wantErr: "the hub at " + hubHost + " does not serve cluster.switchboard.io/v1alpha1: " +
			"is switchboard installed and its APIService Available?",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.options()
			tc.setup(f, &o)
			res, err := f.joinWith(o)
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("error:\n  got:  %v\n  want: %s", err, tc.wantErr)
			}
			if res != nil {
				t.Errorf("result %+v, want none", res)
			}
			assertNoWrites(t, f)
		})
	}
}

func TestJoinPreflightUnreachable(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "https://x/apis", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}}
	cases := []struct {
		name        string
		setup       func(f *fixture)
		wantWhich   string
		wantAddress string
		wantReason  string
	}{{
		name: "member refuses",
		setup: func(f *fixture) {
			f.member.PrependReactor("create", "selfsubjectaccessreviews", failWith(refused))
		},
		wantWhich: "member", wantAddress: memberHost, wantReason: "refused",
	}, {
		name: "hub rejects the credentials",
		setup: func(f *fixture) {
			f.hub.PrependReactor("create", "selfsubjectaccessreviews", failWith(apierrors.NewUnauthorized("bad token")))
		},
		wantWhich: "hub", wantAddress: hubHost, wantReason: "unauthorized",
	}, {
		name: "hub discovery times out",
		setup: func(f *fixture) {
			f.hub.PrependReactor("get", "resource", failWith(&url.Error{Op: "Get", URL: hubHost, Err: context.DeadlineExceeded}))
		},
		wantWhich: "hub", wantAddress: hubHost, wantReason: "timeout",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(f)
			_, err := f.join()
			var unreachable *UnreachableError
			if !errors.As(err, &unreachable) {
				t.Fatalf("error %v (%T), want an *UnreachableError", err, err)
			}
			if unreachable.Which != tc.wantWhich || unreachable.Address != tc.wantAddress || unreachable.Reason != tc.wantReason {
				t.Errorf("got %s/%s/%s, want %s/%s/%s", unreachable.Which, unreachable.Address, unreachable.Reason,
					tc.wantWhich, tc.wantAddress, tc.wantReason)
			}
			assertNoWrites(t, f)
		})
	}
}

func failWith(err error) k8stesting.ReactionFunc {
	return func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, err }
}

func TestJoinFirstTime(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte("ca-from-a-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name          string
		memberConfig  *rest.Config
		endpoint      string
		hubNamespace  string
		slowToken     bool
		wantCA        string
		wantEndpoint  string
		wantInsecure  bool
		wantNamespace string
	}{{
		name:         "CA from the member kubeconfig",
		memberConfig: &rest.Config{Host: memberHost, TLSClientConfig: rest.TLSClientConfig{CAData: memberKubeconfigCA}},
		wantCA:       string(memberKubeconfigCA), wantEndpoint: memberHost, wantNamespace: DefaultHubNamespace,
	}, {
		name:         "CA file of the member kubeconfig",
		memberConfig: &rest.Config{Host: memberHost, TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}},
		wantCA:       "ca-from-a-file", wantEndpoint: memberHost, wantNamespace: DefaultHubNamespace,
	}, {
		name:         "no CA in the kubeconfig: the token Secret's",
		memberConfig: &rest.Config{Host: memberHost},
		wantCA:       tokenSecretCA, wantEndpoint: memberHost, wantNamespace: DefaultHubNamespace,
	}, {
		name:         "endpoint, insecure and hub namespace given",
		memberConfig: &rest.Config{Host: memberHost, TLSClientConfig: rest.TLSClientConfig{Insecure: true}},
		endpoint:     "https://member.internal:443",
		hubNamespace: "team-a",
		wantCA:       tokenSecretCA, wantEndpoint: "https://member.internal:443", wantInsecure: true, wantNamespace: "team-a",
	}, {
		name:         "token controller takes a while",
		memberConfig: &rest.Config{Host: memberHost, TLSClientConfig: rest.TLSClientConfig{CAData: memberKubeconfigCA}},
		slowToken:    true,
		wantCA:       string(memberKubeconfigCA), wantEndpoint: memberHost, wantNamespace: DefaultHubNamespace,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.memberConfig = tc.memberConfig
			if tc.slowToken {
				f.tokens.setFillAfterGets(2)
			}
			o := f.options()
			o.Endpoint, o.HubNamespace = tc.endpoint, tc.hubNamespace
			res, err := f.joinWith(o)
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			ctx := context.Background()

			token := f.tokenSecret()
			if token == nil {
				t.Fatal("no token Secret in the member")
			}
			hubSecret := "Secret " + tc.wantNamespace + "/" + SecretName(testName)
			assertChanges(t, res.Changes,
				"created ValidatingAdmissionPolicy "+GuardName,
				"created ValidatingAdmissionPolicyBinding "+GuardName,
				"created Namespace switchboard-system",
				"created ServiceAccount switchboard-system/switchboard-impersonator",
				"created ClusterRole switchboard:impersonator",
				"created ClusterRoleBinding switchboard:impersonator",
				"created Secret switchboard-system/"+token.Name,
				"created "+hubSecret,
				"created Cluster prod")
			if res.AlreadyAuthorized {
				t.Error("AlreadyAuthorized on a first join")
			}
			if res.Verified != verifiedText {
				t.Errorf("Verified = %q, want %q", res.Verified, verifiedText)
			}
			if len(f.checkedWith) != 0 {
				t.Errorf("a new token was checked %d times, want 0", len(f.checkedWith))
			}

			// Member.
			ns, err := f.member.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			assertManaged(t, ns)
			sa, err := f.member.CoreV1().ServiceAccounts(Namespace).Get(ctx, ServiceAccountName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			assertManaged(t, sa)
			role := f.clusterRole()
			assertManaged(t, role)
			if !apiequality.Semantic.DeepEqual(role.Rules, wantRules) || role.AggregationRule != nil {
				t.Errorf("ClusterRole rules %+v (aggregation %v), want %+v", role.Rules, role.AggregationRule, wantRules)
			}
			binding := f.binding()
			assertManaged(t, binding)
			wantRef := rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: ClusterRoleName}
			wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: ServiceAccountName, Namespace: Namespace}}
			if binding.RoleRef != wantRef || !apiequality.Semantic.DeepEqual(binding.Subjects, wantSubjects) {
				t.Errorf("binding %+v %+v, want %+v %+v", binding.RoleRef, binding.Subjects, wantRef, wantSubjects)
			}
			assertManaged(t, token)
			if !strings.HasPrefix(token.Name, TokenSecretPrefix) || token.GenerateName != TokenSecretPrefix {
				t.Errorf("token Secret %q (generateName %q)", token.Name, token.GenerateName)
			}
			if token.Type != corev1.SecretTypeServiceAccountToken || token.Annotations["kubernetes.io/service-account.name"] != ServiceAccountName {
				t.Errorf("token Secret type %q, annotations %v", token.Type, token.Annotations)
			}
			if got := f.memberTokenSecrets(); len(got) != 1 {
				t.Errorf("token Secrets %q, want one", got)
			}

			// Hub.
			secret := f.hubSecret(tc.wantNamespace)
			assertManaged(t, secret)
			wantData := map[string][]byte{"token": tokenFor(token.Name), "ca.crt": []byte(tc.wantCA)}
			if secret.Type != corev1.SecretTypeOpaque || !apiequality.Semantic.DeepEqual(secret.Data, wantData) {
				t.Errorf("hub Secret type %q data %q, want Opaque %q", secret.Type, secret.Data, wantData)
			}
			cluster := f.cluster()
			assertManaged(t, cluster)
			wantSpec := v1alpha1.ClusterSpec{
				Endpoint:              tc.wantEndpoint,
				CredentialsSecretRef:  v1alpha1.SecretReference{Name: "prod-credentials"},
				InsecureSkipTLSVerify: tc.wantInsecure,
			}
			if cluster.Spec != wantSpec {
				t.Errorf("Cluster spec %+v, want %+v", cluster.Spec, wantSpec)
			}
		})
	}
}

func TestJoinAgainChangesNothing(t *testing.T) {
	f := joined(t)
	token := f.tokenSecret()
	res := f.mustJoin()

	assertChanges(t, res.Changes,
		"unchanged ValidatingAdmissionPolicy "+GuardName,
		"unchanged ValidatingAdmissionPolicyBinding "+GuardName,
		"unchanged Namespace switchboard-system",
		"unchanged ServiceAccount switchboard-system/switchboard-impersonator",
		"unchanged ClusterRole switchboard:impersonator",
		"unchanged ClusterRoleBinding switchboard:impersonator",
		"unchanged Secret switchboard-system/"+token.Name,
		"unchanged Secret switchboard-system/prod-credentials",
		"unchanged Cluster prod")
	if !res.AlreadyAuthorized {
		t.Error("AlreadyAuthorized = false on a second join")
	}
	if res.Verified != verifiedText {
		t.Errorf("Verified = %q", res.Verified)
	}
	if len(f.checkedWith) != 1 || string(f.checkedWith[0]) != string(tokenFor(token.Name)) {
		t.Errorf("token checks %q, want one with the existing token", f.checkedWith)
	}
	for name, fake := range map[string]*k8stesting.Fake{"member": &f.member.Fake, "hub": &f.hub.Fake, "switchboard": &f.sb.Fake} {
		for _, a := range fake.Actions() {
			if !isRead(a) {
				t.Errorf("%s: %s %s", name, a.GetVerb(), a.GetResource().Resource)
			}
		}
	}
}

func TestJoinCorrectsDrift(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name       string
		drift      func(t *testing.T, f *fixture)
		changed    string
		wantWrites []string
		check      func(t *testing.T, f *fixture)
		// overwrite is join's --overwrite.
		overwrite bool
	}{{
		name: "ClusterRole rules edited",
		drift: func(t *testing.T, f *fixture) {
			r := f.clusterRole()
			r.Rules = append(r.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
			r.Rules[0].Resources = []string{"users"}
			mustUpdate(t)(f.member.RbacV1().ClusterRoles().Update(ctx, r, metav1.UpdateOptions{}))
		},
		changed:    "ClusterRole switchboard:impersonator",
		wantWrites: []string{"patch clusterroles switchboard:impersonator"},
		check: func(t *testing.T, f *fixture) {
			if r := f.clusterRole(); !apiequality.Semantic.DeepEqual(r.Rules, wantRules) {
				t.Errorf("rules %+v", r.Rules)
			}
		},
	}, {
		name: "ClusterRole made an aggregate",
		drift: func(t *testing.T, f *fixture) {
			r := f.clusterRole()
			r.AggregationRule = &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"x": "y"}}}}
			mustUpdate(t)(f.member.RbacV1().ClusterRoles().Update(ctx, r, metav1.UpdateOptions{}))
		},
		changed:    "ClusterRole switchboard:impersonator",
		wantWrites: []string{"patch clusterroles switchboard:impersonator"},
		check: func(t *testing.T, f *fixture) {
			if r := f.clusterRole(); r.AggregationRule != nil || !apiequality.Semantic.DeepEqual(r.Rules, wantRules) {
				t.Errorf("aggregation %+v rules %+v", r.AggregationRule, r.Rules)
			}
		},
	}, {
		name: "extra subject in the binding",
		drift: func(t *testing.T, f *fixture) {
			b := f.binding()
			b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "mallory"})
			mustUpdate(t)(f.member.RbacV1().ClusterRoleBindings().Update(ctx, b, metav1.UpdateOptions{}))
		},
		changed:    "ClusterRoleBinding switchboard:impersonator",
		wantWrites: []string{"patch clusterrolebindings switchboard:impersonator"},
		check:      checkBinding,
	}, {
		name: "binding to another role",
		drift: func(t *testing.T, f *fixture) {
			b := f.binding()
			b.RoleRef.Name = "cluster-admin"
			mustUpdate(t)(f.member.RbacV1().ClusterRoleBindings().Update(ctx, b, metav1.UpdateOptions{}))
		},
		changed: "ClusterRoleBinding switchboard:impersonator",
		wantWrites: []string{
			"delete clusterrolebindings switchboard:impersonator",
			"create clusterrolebindings switchboard:impersonator",
		},
		check: checkBinding,
	}, {
		name: "hub Secret with another token",
		drift: func(t *testing.T, f *fixture) {
			s := f.hubSecret(DefaultHubNamespace)
			s.Data["token"] = []byte("someone-else's")
			mustUpdate(t)(f.hub.CoreV1().Secrets(DefaultHubNamespace).Update(ctx, s, metav1.UpdateOptions{}))
		},
		changed:    "Secret switchboard-system/prod-credentials",
		wantWrites: []string{"patch secrets prod-credentials"},
		check: func(t *testing.T, f *fixture) {
			want := map[string][]byte{"token": tokenFor(f.tokenSecret().Name), "ca.crt": memberKubeconfigCA}
			if s := f.hubSecret(DefaultHubNamespace); !apiequality.Semantic.DeepEqual(s.Data, want) {
				t.Errorf("hub Secret data %q, want %q", s.Data, want)
			}
		},
	}, {
		name: "hub Secret with a client certificate beside the token",
		drift: func(t *testing.T, f *fixture) {
			s := f.hubSecret(DefaultHubNamespace)
			s.Data[v1alpha1.SecretKeyClientCert] = []byte("a certificate")
			s.Data[v1alpha1.SecretKeyClientKey] = []byte("its key")
			mustUpdate(t)(f.hub.CoreV1().Secrets(DefaultHubNamespace).Update(ctx, s, metav1.UpdateOptions{}))
		},
		changed:    "Secret switchboard-system/prod-credentials",
		wantWrites: []string{"patch secrets prod-credentials"},
		check: func(t *testing.T, f *fixture) {
			want := map[string][]byte{"token": tokenFor(f.tokenSecret().Name), "ca.crt": memberKubeconfigCA}
			if s := f.hubSecret(DefaultHubNamespace); !apiequality.Semantic.DeepEqual(s.Data, want) {
				t.Errorf("hub Secret data %q, want %q", s.Data, want)
			}
		},
	}, {
		name: "Cluster endpoint changed; the admin's TLS server name, proxy and connection are kept",
		drift: func(t *testing.T, f *fixture) {
			c := f.cluster()
			c.Spec.Endpoint = "https://elsewhere.example"
			c.Spec.TLSServerName = "member.internal"
			c.Spec.ProxyURL = "socks5://proxy.example:1080"
			// A join that does not name a connection leaves the admin's.
			c.Spec.Connection = v1alpha1.ConnectionTunnel
			mustUpdate(t)(f.sb.ClusterV1alpha1().Clusters().Update(ctx, c, metav1.UpdateOptions{}))
		},
		changed:    "Cluster prod",
		wantWrites: []string{"patch clusters prod"},
		overwrite:  true,
		check: func(t *testing.T, f *fixture) {
			c := f.cluster()
			want := v1alpha1.ClusterSpec{
				Connection:           v1alpha1.ConnectionTunnel,
				Endpoint:             memberHost,
				CredentialsSecretRef: v1alpha1.SecretReference{Name: "prod-credentials"},
				TLSServerName:        "member.internal",
				ProxyURL:             "socks5://proxy.example:1080",
			}
			if c.Spec != want {
				t.Errorf("Cluster spec %+v, want %+v", c.Spec, want)
			}
			assertManaged(t, c)
		},
	}, {
		name: "Cluster secret reference and TLS verification changed",
		drift: func(t *testing.T, f *fixture) {
			c := f.cluster()
			c.Spec.CredentialsSecretRef.Name = "other"
			c.Spec.InsecureSkipTLSVerify = true
			mustUpdate(t)(f.sb.ClusterV1alpha1().Clusters().Update(ctx, c, metav1.UpdateOptions{}))
		},
		changed:    "Cluster prod",
		wantWrites: []string{"patch clusters prod"},
		check: func(t *testing.T, f *fixture) {
			want := v1alpha1.ClusterSpec{Endpoint: memberHost, CredentialsSecretRef: v1alpha1.SecretReference{Name: "prod-credentials"}}
			if c := f.cluster(); c.Spec != want {
				t.Errorf("Cluster spec %+v, want %+v", c.Spec, want)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := joined(t)
			tc.drift(t, f)
			f.clearActions()

			o := f.options()
			o.Overwrite = tc.overwrite
			res, err := f.joinWith(o)
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			for _, c := range res.Changes {
				want := Unchanged
				if c.Object == tc.changed {
					want = Corrected
				}
				if c.Action != want {
					t.Errorf("%s: %s, want %s", c.Object, c.Action, want)
				}
			}
			if !strings.Contains(strings.Join(changeStrings(res.Changes), "\n"), "corrected "+tc.changed) {
				t.Errorf("changes %q do not correct %s", changeStrings(res.Changes), tc.changed)
			}
			if res.AlreadyAuthorized {
				t.Error("AlreadyAuthorized after a correction")
			}
			assertWrites(t, append(f.memberWrites(), f.hubWrites()...), tc.wantWrites...)
			tc.check(t, f)

			// Corrected for good: a third join changes nothing.
			f.clearActions()
			if res := f.mustJoin(); !res.AlreadyAuthorized {
				t.Errorf("third join: %q", changeStrings(res.Changes))
			}
			assertNoWrites(t, f)
		})
	}
}

// mustUpdate(t)(client.Update(...)) fails the test if the update did.
func mustUpdate(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("update: %v", err)
		}
	}
}

func checkBinding(t *testing.T, f *fixture) {
	t.Helper()
	_, _, _, want := memberObjects()
	b := f.binding()
	if b.RoleRef != want.RoleRef || !apiequality.Semantic.DeepEqual(b.Subjects, want.Subjects) {
		t.Errorf("binding %+v %+v, want %+v %+v", b.RoleRef, b.Subjects, want.RoleRef, want.Subjects)
	}
	assertManaged(t, b)
}

func TestJoinRepairsTheToken(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		breakIt func(t *testing.T, f *fixture, old *corev1.Secret)
		action  string
	}{{
		name: "token Secret deleted",
		breakIt: func(t *testing.T, f *fixture, old *corev1.Secret) {
			if err := f.member.CoreV1().Secrets(Namespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		action: Created,
	}, {
		name: "token Secret emptied",
		breakIt: func(t *testing.T, f *fixture, old *corev1.Secret) {
			old.Data = nil
			mustUpdate(t)(f.member.CoreV1().Secrets(Namespace).Update(ctx, old, metav1.UpdateOptions{}))
		},
		action: Corrected,
	}, {
		name: "token rejected (service account recreated)",
		breakIt: func(t *testing.T, f *fixture, old *corev1.Secret) {
			f.checkToken = rejectToken(old, apierrors.NewUnauthorized("invalid bearer token"))
		},
		action: Corrected,
	}, {
		name: "token authenticates as someone else",
		breakIt: func(t *testing.T, f *fixture, old *corev1.Secret) {
			f.checkToken = rejectToken(old, &wrongIdentityError{got: "system:serviceaccount:default:other"})
		},
		action: Corrected,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := joined(t)
			old := f.tokenSecret()
			tc.breakIt(t, f, old)
			f.clearActions()

			res := f.mustJoin()
			fresh := f.tokenSecret()
			if fresh == nil || fresh.Name == old.Name {
				t.Fatalf("token Secret %v after the repair, want a new one (old %s)", fresh, old.Name)
			}
			if got := f.memberTokenSecrets(); len(got) != 1 || got[0] != fresh.Name {
				t.Errorf("token Secrets %q, want only %s", got, fresh.Name)
			}
			assertChanges(t, res.Changes,
				"unchanged ValidatingAdmissionPolicy "+GuardName,
				"unchanged ValidatingAdmissionPolicyBinding "+GuardName,
				"unchanged Namespace switchboard-system",
				"unchanged ServiceAccount switchboard-system/switchboard-impersonator",
				"unchanged ClusterRole switchboard:impersonator",
				"unchanged ClusterRoleBinding switchboard:impersonator",
				tc.action+" Secret switchboard-system/"+fresh.Name,
				"corrected Secret switchboard-system/prod-credentials",
				"unchanged Cluster prod")
			wantWrites := []string{"create secrets " + TokenSecretPrefix + "*"}
			if tc.action == Corrected {
				wantWrites = []string{"delete secrets " + old.Name, "create secrets " + TokenSecretPrefix + "*"}
			}
			assertWrites(t, f.memberWrites(), wantWrites...)
			assertWrites(t, f.hubWrites(), "patch secrets prod-credentials")
			if got := f.hubSecret(DefaultHubNamespace).Data["token"]; string(got) != string(tokenFor(fresh.Name)) {
				t.Errorf("hub token %q, want the new one", got)
			}
		})
	}
}

// rejectToken makes the token check fail with err for old's token only.
func rejectToken(old *corev1.Secret, err error) tokenChecker {
	bad := string(old.Data[corev1.ServiceAccountTokenKey])
	return func(_ context.Context, token []byte) error {
		if string(token) == bad {
			return err
		}
		return nil
	}
}

func TestJoinTokenCheckFailsForAnotherReason(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		wantError []string
	}{{
		name: "network error",
		err: &url.Error{Op: "Post", URL: memberHost + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}},
		wantError: []string{"member", memberHost, "refused"},
	}, {
		name:      "server error",
		err:       apierrors.NewInternalError(errors.New("etcd is down")),
		wantError: []string{"checking the token in Secret switchboard-system/" + TokenSecretPrefix, "etcd is down"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := joined(t)
			old := f.tokenSecret()
			f.checkToken = func(context.Context, []byte) error { return tc.err }

			res, err := f.join()
			assertErrorContains(t, err, tc.wantError...)
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v does not wrap %v", err, tc.err)
			}
			assertNoWrites(t, f)
			if got := f.memberTokenSecrets(); len(got) != 1 || got[0] != old.Name {
				t.Errorf("token Secrets %q, want still %s", got, old.Name)
			}
			if res == nil || len(res.Changes) != 6 {
				t.Errorf("result %+v, want the guard and the four member objects checked", res)
			}
		})
	}
}

func TestJoinTokenTimeout(t *testing.T) {
	f := newFixture(t)
	f.tokens.setFillAfterGets(-1) // no token controller
	o := f.options()
	o.TokenTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := f.joinWith(o)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Join took %s with a 300ms token timeout", took)
	}
	const waitedFor = "Secret switchboard-system/" + TokenSecretPrefix + "00001"
	assertErrorContains(t, err, waitedFor, "was not filled with a token within 300ms",
		"token controller (kube-controller-manager)", "Join again")
	assertWrites(t, f.hubWrites())
	// Everything this join made in the member is gone again, newest first.
	var joinErr *Error
	if !errors.As(err, &joinErr) || joinErr.RollbackErr != nil {
		t.Fatalf("error %#v, want a *join.Error with a complete rollback", err)
	}
	assertChanges(t, joinErr.RolledBack,
		"deleted "+waitedFor,
		"deleted ClusterRoleBinding switchboard:impersonator",
		"deleted ClusterRole switchboard:impersonator",
		"deleted ServiceAccount switchboard-system/switchboard-impersonator",
		"deleted Namespace switchboard-system",
		"deleted ValidatingAdmissionPolicyBinding "+GuardName,
		"deleted ValidatingAdmissionPolicy "+GuardName)
	if names := f.memberTokenSecrets(); len(names) != 0 {
		t.Errorf("token Secrets left after the rollback: %q", names)
	}

	// The controller runs again: the next join starts afresh.
	f.tokens.setFillAfterGets(0)
	f.clearActions()
	res := f.mustJoin()
	fresh := f.tokenSecret()
	if got := changeStrings(res.Changes)[6]; got != "created Secret switchboard-system/"+fresh.Name {
		t.Errorf("token change %q", got)
	}
}

// A wait of join's own that runs out is not the API server failing to
// answer: the API server answered every request.
func TestJoinOwnTimeoutsAreNotReportedAsUnreachable(t *testing.T) {
	cases := []struct {
		name  string
		setup func(f *fixture)
	}{{
		name:  "token controller does not run",
		setup: func(f *fixture) { f.tokens.setFillAfterGets(-1) },
	}, {
		name: "namespace stays terminating",
		setup: func(f *fixture) {
			if err := f.member.Tracker().Add(terminating(managedNamespace())); err != nil {
				t.Fatal(err)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(f)
			o := f.options()
			o.TokenTimeout = 300 * time.Millisecond
			_, err := f.joinWith(o)
			if err == nil {
				t.Fatal("Join succeeded")
			}
			var unreachable *UnreachableError
			if errors.As(err, &unreachable) {
				t.Errorf("a timeout of join's own wait is reported as the %s API server not answering (reason %q):\n  %v",
					unreachable.Which, unreachable.Reason, err)
			}
		})
	}
}

func managedNamespace() *corev1.Namespace {
	ns, _, _, _ := memberObjects()
	return ns
}

func TestJoinRefusesObjectsItDoesNotOwn(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		replace func(t *testing.T, f *fixture) // with an unlabelled object of the same name
		object  string
		read    func(f *fixture) (metav1.Object, error)
	}{{
		name: "ServiceAccount",
		replace: func(t *testing.T, f *fixture) {
			_, sa, _, _ := memberObjects()
			replaceIn(t, f.member.Tracker(), corev1.SchemeGroupVersion.WithResource("serviceaccounts"), unlabelled(sa))
		},
		object: "ServiceAccount switchboard-system/switchboard-impersonator",
		read: func(f *fixture) (metav1.Object, error) {
			return f.member.CoreV1().ServiceAccounts(Namespace).Get(ctx, ServiceAccountName, metav1.GetOptions{})
		},
	}, {
		name: "ClusterRole",
		replace: func(t *testing.T, f *fixture) {
			_, _, role, _ := memberObjects()
			role.Rules = []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}
			replaceIn(t, f.member.Tracker(), rbacv1.SchemeGroupVersion.WithResource("clusterroles"), unlabelled(role))
		},
		object: "ClusterRole switchboard:impersonator",
		read: func(f *fixture) (metav1.Object, error) {
			return f.member.RbacV1().ClusterRoles().Get(ctx, ClusterRoleName, metav1.GetOptions{})
		},
	}, {
		name: "ClusterRoleBinding",
		replace: func(t *testing.T, f *fixture) {
			_, _, _, binding := memberObjects()
			binding.Subjects = append(binding.Subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "ops"})
			replaceIn(t, f.member.Tracker(), rbacv1.SchemeGroupVersion.WithResource("clusterrolebindings"), unlabelled(binding))
		},
		object: "ClusterRoleBinding switchboard:impersonator",
		read: func(f *fixture) (metav1.Object, error) {
			return f.member.RbacV1().ClusterRoleBindings().Get(ctx, ClusterRoleName, metav1.GetOptions{})
		},
	}, {
		name: "hub Secret",
		replace: func(t *testing.T, f *fixture) {
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: SecretName(testName), Namespace: DefaultHubNamespace},
				Data:       map[string][]byte{"token": []byte("an admin's token")},
			}
			replaceIn(t, f.hub.Tracker(), secretsGVR, s)
		},
		object: "Secret switchboard-system/prod-credentials on the hub",
		read: func(f *fixture) (metav1.Object, error) {
			return f.hub.CoreV1().Secrets(DefaultHubNamespace).Get(ctx, SecretName(testName), metav1.GetOptions{})
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := joined(t)
			tc.replace(t, f)
			before, err := tc.read(f)
			if err != nil {
				t.Fatal(err)
			}
			f.clearActions()

			_, err = f.join()
			assertErrorContains(t, err, tc.object, "not managed by switchboard", "app.kubernetes.io/managed-by=switchboard")
			assertNoWrites(t, f)
			after, err := tc.read(f)
			if err != nil {
				t.Fatal(err)
			}
			if !apiequality.Semantic.DeepEqual(before, after) {
				t.Errorf("%s changed:\n  before %+v\n  after  %+v", tc.object, before, after)
			}
		})
	}
}

// replaceIn swaps an object in a fake's store, as an administrator would
// have, without recording an action.
func replaceIn(t *testing.T, tracker k8stesting.ObjectTracker, gvr schema.GroupVersionResource, obj runtime.Object) {
	t.Helper()
	m := obj.(metav1.Object)
	if err := tracker.Delete(gvr, m.GetNamespace(), m.GetName()); err != nil {
		t.Fatal(err)
	}
	if err := tracker.Add(obj); err != nil {
		t.Fatal(err)
	}
}

func TestJoinUsesAnUnlabelledNamespace(t *testing.T) {
	f := newFixture(t, unlabelled(managedNamespace()))
	res := f.mustJoin()
	if got := res.Changes[2]; got != (Change{Object: "Namespace switchboard-system", Action: Kept}) {
		t.Errorf("namespace change %v", got)
	}
	for _, c := range slices.Delete(slices.Clone(res.Changes), 2, 3) {
		if c.Action != Created {
			t.Errorf("%v, want created", c)
		}
	}
	for _, w := range f.memberWrites() {
		if strings.Contains(w, "namespaces") {
			t.Errorf("wrote the namespace: %s", w)
		}
	}

	f.clearActions()
	if res := f.mustJoin(); !res.AlreadyAuthorized || res.Changes[2].Action != Kept {
		t.Errorf("second join: AlreadyAuthorized %v, %q", res.AlreadyAuthorized, changeStrings(res.Changes))
	}
	assertNoWrites(t, f)

	f.clearActions()
	changes, err := Unjoin(context.Background(), f.unjoinOptions(true))
	if err != nil {
		t.Fatal(err)
	}
	if last := changes[len(changes)-1]; last != (Change{Object: "Namespace switchboard-system", Action: Kept}) {
		t.Errorf("unjoin: %q", changeStrings(changes))
	}
	if _, err := f.member.CoreV1().Namespaces().Get(context.Background(), Namespace, metav1.GetOptions{}); err != nil {
		t.Errorf("the administrator's namespace is gone: %v", err)
	}
	for _, w := range f.memberWrites() {
		if strings.Contains(w, "namespaces") {
			t.Errorf("unjoin wrote the namespace: %s", w)
		}
	}
}

func TestJoinWaitsForATerminatingNamespace(t *testing.T) {
	t.Run("gone in time", func(t *testing.T) {
		f := newFixture(t, terminating(managedNamespace()))
		// The namespace controller finishes while join waits: the third read
		// (the first poll after the immediate one) no longer finds it.
		reads := 0
		f.member.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
			if reads++; reads == 3 {
				if err := f.member.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("namespaces"), "", Namespace); err != nil {
					return true, nil, err
				}
			}
			return false, nil, nil
		})
		res := f.mustJoin()
		if got := res.Changes[2]; got != (Change{Object: "Namespace switchboard-system", Action: Created}) {
			t.Errorf("namespace change %v", got)
		}
		ns, err := f.member.CoreV1().Namespaces().Get(context.Background(), Namespace, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ns.DeletionTimestamp != nil {
			t.Error("the namespace is still the terminating one")
		}
		assertManaged(t, ns)
		if reads < 3 {
			t.Errorf("%d reads of the namespace: join did not wait", reads)
		}
	})
	t.Run("still there", func(t *testing.T) {
		f := newFixture(t, terminating(managedNamespace()))
		o := f.options()
		o.TokenTimeout = 300 * time.Millisecond
		res, err := f.joinWith(o)
		assertErrorContains(t, err, "namespace switchboard-system is being deleted and was not gone within 300ms", "join again")
		if res == nil || len(res.Changes) != 0 {
			t.Errorf("result %+v, want no changes", res)
		}
		assertNoWrites(t, f)
	})
}

// A join whose member switchboard cannot reach leaves nothing behind.
func TestJoinVerifyFails(t *testing.T) {
	f := newFixture(t)
	f.verifyErr = errors.New(`GET /clusters/prod/proxy/version: cluster "prod" is unreachable at https://127.0.0.1:1`)
	res, err := f.join()
	assertErrorContains(t, err, `a request through the hub to cluster "prod" failed`, "unreachable at https://127.0.0.1:1")
	if res == nil || len(res.Changes) != 9 || res.Verified != "" {
		t.Errorf("result %+v", res)
	}
	var joinErr *Error
	if !errors.As(err, &joinErr) || joinErr.RollbackErr != nil {
		t.Fatalf("error %#v, want a *join.Error with a complete rollback", err)
	}
	token := "Secret switchboard-system/" + TokenSecretPrefix + "00001"
	assertChanges(t, joinErr.RolledBack,
		"deleted Cluster prod",
		"deleted Secret switchboard-system/prod-credentials on the hub",
		"deleted "+token,
		"deleted ClusterRoleBinding switchboard:impersonator",
		"deleted ClusterRole switchboard:impersonator",
		"deleted ServiceAccount switchboard-system/switchboard-impersonator",
		"deleted Namespace switchboard-system",
		"deleted ValidatingAdmissionPolicyBinding "+GuardName,
		"deleted ValidatingAdmissionPolicy "+GuardName)
	ctx := context.Background()
	if _, err := f.sb.ClusterV1alpha1().Clusters().Get(ctx, testName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Cluster after the rollback: %v", err)
	}
	if _, err := f.hub.CoreV1().Secrets(DefaultHubNamespace).Get(ctx, SecretName(testName), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("hub Secret after the rollback: %v", err)
	}
	if _, err := f.member.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("member namespace after the rollback: %v", err)
	}
}

// Joining again over a working join, when the check fails, puts the hub
// back as it was: the Secret's old data and the Cluster's old spec.
func TestJoinVerifyFailsAfterARepoint(t *testing.T) {
	f := joined(t)
	before := f.cluster().Spec
	beforeData := f.hubSecret(DefaultHubNamespace).Data
	o := f.options()
	o.Endpoint = "https://127.0.0.1:1"
	o.Overwrite = true
	o.MemberConfig = &rest.Config{Host: memberHost, TLSClientConfig: rest.TLSClientConfig{CAData: []byte("another CA")}}
	f.verifyErr = errors.New("unreachable")
	_, err := f.joinWith(o)
	var joinErr *Error
	if !errors.As(err, &joinErr) || joinErr.RollbackErr != nil {
		t.Fatalf("error %#v, want a *join.Error with a complete rollback", err)
	}
	assertChanges(t, joinErr.RolledBack, "restored Cluster prod", "restored Secret switchboard-system/prod-credentials on the hub")
	if got := f.cluster().Spec; got != before {
		t.Errorf("Cluster spec after the rollback %+v, want %+v", got, before)
	}
	if got := f.hubSecret(DefaultHubNamespace).Data; !apiequality.Semantic.DeepEqual(got, beforeData) {
		t.Errorf("hub Secret after the rollback %q, want %q", got, beforeData)
	}
}
