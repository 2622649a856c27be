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

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
)

// setIdentityPolicy puts policy (nil: none) on Cluster name and, when the
// test ends, takes it off again.
func setIdentityPolicy(t *testing.T, name string, policy *v1alpha1.IdentityPolicy) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"identity": policy}})
	if err != nil {
		t.Fatal(err)
	}
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	if _, err := clusters.Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("setting the identity policy of %s: %v", name, err)
	}
	t.Cleanup(func() {
		_, _ = clusters.Patch(context.Background(), name, types.MergePatchType, []byte(`{"spec":{"identity":null}}`), metav1.PatchOptions{})
	})
}

// TestIdentityPolicyRefusesHubAdmins: a Cluster whose policy refuses
// system:masters gives the hub's admin a 403 from switchboard, which names
// the Cluster and the rule, and member1's audit log has no trace of it.
func TestIdentityPolicyRefusesHubAdmins(t *testing.T) {
	member := f.State.Members[0]
	setIdentityPolicy(t, member.Name, &v1alpha1.IdentityPolicy{Rules: []v1alpha1.IdentityRule{{
		Expression: "!('system:masters' in user.groups)",
		Message:    "hub administrators are not administrators of this member",
	}}})
	kubeconfig := (&framework.User{Kubeconfig: f.State.Hub.Kubeconfig}).MemberKubeconfig(t, member.Name)
	var r framework.KubectlResult
	eventually(t, 30*time.Second, func() error {
		r = framework.Kubectl(t, kubeconfig, "get", "namespaces")
		if r.Err == nil || !strings.Contains(r.Stderr, "identity policy refuses") {
			return fmt.Errorf("kubectl get namespaces as the hub admin: %w\n%s%s", r.Err, r.Stdout, r.Stderr)
		}
		return nil
	})
	for _, want := range []string{"Error from server (Forbidden)", `"` + member.Name + `"`,
		"rule 0 (!('system:masters' in user.groups)): hub administrators are not administrators of this member"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("kubectl says %q, not %q", r.Stderr, want)
		}
	}

	// The hub's audit ID of one refused request is nowhere in member1's log.
	client, err := rest.HTTPClientFor(f.HubConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(f.HubConfig(t).Host + proxyPrefix + member.Name + "/proxy/api/v1/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	auditID := resp.Header.Get("Audit-Id")
	if resp.StatusCode != http.StatusForbidden || auditID == "" {
		t.Fatalf("GET as the hub admin: %d %s, audit ID %q", resp.StatusCode, body, auditID)
	}
	// member1 writes its audit log before it answers (blocking mode), so
	// a request that reached it would be there by now.
	if events := eventsWithID(t, member.AuditLog, auditID); len(events) > 0 {
		t.Errorf("member1's audit log has the request switchboard refused: %+v", events)
	}
}

// TestIdentityPolicyPrefixesHubNames: with every hub user as hub:<name>
// and every group as hub:<group>, the member's kubectl auth whoami shows
// the prefixed names; the member's RBAC bound to the prefixed name
// applies; and the member's own service account of the caller's name, to
// which the caller reaches without a policy, is out of reach.
func TestIdentityPolicyPrefixesHubNames(t *testing.T) {
	ctx := context.Background()
	member := f.State.Members[0]
	sa := f.ServiceAccountUser(t, "deployer")
	f.Grant(t, sa.Name, proxyRule(member.Name))
	parts := strings.Split(sa.Name, ":") // system:serviceaccount:<ns>:<name>
	namespace, name := parts[2], parts[3]

	// The member has a service account of the same name, which may list
	// namespaces there.
	memberClient := f.Member(t, member.Name)
	mustDo(t, func() error {
		_, err := memberClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() {
		_ = memberClient.CoreV1().Namespaces().Delete(context.Background(), namespace, metav1.DeleteOptions{})
	})
	mustDo(t, func() error {
		_, err := memberClient.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	})
	roleName := "e2e:" + namespace + ":list-namespaces"
	mustDo(t, func() error {
		_, err := memberClient.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: roleName},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}}}}, metav1.CreateOptions{})
		return err
	})
	mustDo(t, func() error {
		_, err := memberClient.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: roleName},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: roleName},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: namespace}}}, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() {
		_ = memberClient.RbacV1().ClusterRoleBindings().Delete(context.Background(), roleName, metav1.DeleteOptions{})
		_ = memberClient.RbacV1().ClusterRoles().Delete(context.Background(), roleName, metav1.DeleteOptions{})
	})
	kubeconfig := sa.MemberKubeconfig(t, member.Name)

	// Without a policy the names collide: the hub's account is the
	// member's.
	eventually(t, 30*time.Second, func() error {
		if r := framework.Kubectl(t, kubeconfig, "get", "namespaces", "-o", "name"); r.Err != nil || !strings.Contains(r.Stdout, "namespace/"+namespace) {
			return fmt.Errorf("without a policy, the hub's %s lists member1's namespaces as member1's account: %w %s%s", sa.Name, r.Err, r.Stdout, r.Stderr)
		}
		return nil
	})

	setIdentityPolicy(t, member.Name, &v1alpha1.IdentityPolicy{
		Username: "'hub:' + user.username",
		Groups:   "user.groups.map(g, 'hub:' + g)",
	})
	prefixed := "hub:" + sa.Name
	var whoami string
	eventually(t, 30*time.Second, func() error {
		r := framework.Kubectl(t, kubeconfig, "auth", "whoami", "-o", "json")
		if r.Err != nil || !strings.Contains(r.Stdout, prefixed) {
			return fmt.Errorf("kubectl auth whoami: %w %s%s", r.Err, r.Stdout, r.Stderr)
		}
		whoami = r.Stdout
		return nil
	})
	var review struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(whoami), &review); err != nil {
		t.Fatal(err)
	}
	if review.Status.UserInfo.Username != prefixed {
		t.Errorf("whoami in member1: %q, want %q", review.Status.UserInfo.Username, prefixed)
	}
	for _, g := range review.Status.UserInfo.Groups {
		if !strings.HasPrefix(g, "hub:") && g != "system:authenticated" {
			t.Errorf("whoami in member1 shows group %q, without hub: (groups %q)", g, review.Status.UserInfo.Groups)
		}
	}
	for _, want := range []string{"hub:system:serviceaccounts", "hub:system:serviceaccounts:" + namespace} {
		if !strings.Contains(whoami, `"`+want+`"`) {
			t.Errorf("whoami in member1 lacks group %s: %s", want, whoami)
		}
	}

	// The member's own account of that name is out of reach.
	r := framework.Kubectl(t, kubeconfig, "get", "namespaces")
	if r.Err == nil || !strings.Contains(r.Stderr, `User "`+prefixed+`" cannot list resource "namespaces"`) {
		t.Errorf("with the prefix policy, kubectl get namespaces: %v %s%s", r.Err, r.Stdout, r.Stderr)
	}
	// RBAC bound to the prefixed name applies.
	f.GrantInMember(t, member.Name, prefixed, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}})
	eventually(t, 30*time.Second, func() error {
		if r := framework.Kubectl(t, kubeconfig, "get", "nodes", "-o", "name"); r.Err != nil || !strings.Contains(r.Stdout, "node/"+member.Nodes[0]) {
			return fmt.Errorf("kubectl get nodes as %s: %w %s%s", prefixed, r.Err, r.Stdout, r.Stderr)
		}
		return nil
	})
}

func mustDo(t *testing.T, do func() error) {
	t.Helper()
	if err := do(); err != nil {
		t.Fatal(err)
	}
}

// TestJoinWritesTheIdentityPolicy: kubectl switchboard join --hub-prefix
// writes the policy into the Cluster, and a later join without the flag
// keeps it, also when that join corrects another field of the Cluster
// (server-side apply would drop the fields join owned and no longer
// declares).
func TestJoinWritesTheIdentityPolicy(t *testing.T) {
	ctx := context.Background()
	m := f.State.Members[1]
	t.Cleanup(func() {
		_, _ = f.Switchboard(t).ClusterV1alpha1().Clusters().Patch(context.Background(), m.Name, types.MergePatchType,
			[]byte(`{"spec":{"identity":null}}`), metav1.PatchOptions{})
	})
	mustPlugin(t, "join", m.Name, "--member-kubeconfig", m.Kubeconfig, "--hub-prefix", "hub:", "--refuse-hub-admins")
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	cl, err := clusters.Get(ctx, m.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := cl.Spec.Identity
	if want == nil || want.Username != `"hub:" + user.username` || len(want.Rules) != 1 {
		t.Fatalf("identity after join --hub-prefix --refuse-hub-admins: %+v", want)
	}
	if _, err := clusters.Patch(ctx, m.Name, types.MergePatchType, []byte(`{"spec":{"credentialsSecretRef":{"name":"edited-by-hand"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	out := mustPlugin(t, "join", m.Name, "--member-kubeconfig", m.Kubeconfig)
	if !strings.Contains(out, "corrected Cluster "+m.Name) {
		t.Errorf("join did not correct the edited Cluster:\n%s", out)
	}
	cl, err = clusters.Get(ctx, m.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cl.Spec.CredentialsSecretRef.Name != m.Name+"-credentials" || cl.Spec.Identity == nil || cl.Spec.Identity.Username != want.Username || len(cl.Spec.Identity.Rules) != 1 {
		t.Errorf("after a join without policy flags: credentialsSecretRef %q, identity %+v; want %s-credentials, and the policy kept",
			cl.Spec.CredentialsSecretRef.Name, cl.Spec.Identity, m.Name)
	}
}

// TestWhoAmIThroughTheProxyIsTheHubCaller: without a policy, kubectl auth
// whoami through the proxy shows in member1 exactly the caller the hub
// sees: user, UID, groups in order, and extras. Switchboard leaves out the
// groups members give by themselves (system:authenticated, and a service
// account's own groups), so this is what proves they do.
func TestWhoAmIThroughTheProxyIsTheHubCaller(t *testing.T) {
	member := f.State.Members[0]
	sa := f.ServiceAccountUser(t, "whoami")
	f.Grant(t, sa.Name, proxyRule(member.Name))
	cert := f.CertificateUser(t, "e2e-whoami", "e2e:whoami-readers", "e2e:team")
	f.Grant(t, cert.Name, proxyRule(member.Name))
	for _, u := range []*framework.User{sa, cert} {
		t.Run(u.Name, func(t *testing.T) {
			atHub := kubectlWhoAmI(t, u.Kubeconfig)
			var atMember string
			eventually(t, 30*time.Second, func() error {
				atMember = kubectlWhoAmI(t, u.MemberKubeconfig(t, member.Name))
				if atMember == "" {
					return fmt.Errorf("kubectl auth whoami in %s failed", member.Name)
				}
				return nil
			})
			if atMember != atHub {
				t.Errorf("%s sees\n%s\nthe hub sees\n%s", member.Name, atMember, atHub)
			}
			if u == sa && !strings.Contains(atHub, `"system:serviceaccounts"`) {
				t.Errorf("the hub's service account has not its groups: %s", atHub)
			}
		})
	}
}

// kubectlWhoAmI is the user info kubectl auth whoami shows, as JSON, or "" when
// it fails.
func kubectlWhoAmI(t *testing.T, kubeconfig string) string {
	t.Helper()
	r := framework.Kubectl(t, kubeconfig, "auth", "whoami", "-o", "json")
	if r.Err != nil {
		t.Logf("kubectl auth whoami: %v %s%s", r.Err, r.Stdout, r.Stderr)
		return ""
	}
	var review struct {
		Status struct {
			UserInfo json.RawMessage `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &review); err != nil {
		t.Fatal(err)
	}
	return string(review.Status.UserInfo)
}
