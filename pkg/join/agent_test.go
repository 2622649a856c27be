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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/names"
)

const (
	agentImage     = "registry.example/switchboard:v9"
	agentHubServer = "https://hub.internal:6443"
)

var hubKubeconfigCA = []byte("ca-from-the-hub-kubeconfig")

// tunnelOptions are Join's options for a tunnelled member, with the
// agent's token check recorded.
func (f *fixture) tunnelOptions() Options {
	o := f.options()
	f.hubConfig.CAData = hubKubeconfigCA
	o.Agent = &Agent{Image: agentImage, HubServer: agentHubServer, ServerCount: 2}
	o.checkAgentToken = func(ctx context.Context, token []byte) error {
		f.checkedWith = append(f.checkedWith, token)
		if f.checkAgentToken != nil {
			return f.checkAgentToken(ctx, token)
		}
		return nil
	}
	return o
}

func (f *fixture) mustJoinTunnel() *Result {
	f.t.Helper()
	res, err := f.joinWith(f.tunnelOptions())
	if err != nil {
		f.t.Fatalf("Join: %v", err)
	}
	return res
}

func (f *fixture) agentTokenSecret() *corev1.Secret {
	f.t.Helper()
	s, err := findTokenSecret(context.Background(), agentAccount(f.hub, DefaultHubNamespace, testName, nil))
	if err != nil || s == nil {
		f.t.Fatalf("the agent's token Secret on the hub: %v, %v", s, err)
	}
	return s
}

// found is a read's object, for a test that fails when the read does:
// found(client.Get(...))(t).
func found[T any](obj T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
}

func TestJoinTunnelSetsUpTheAgent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	res := f.mustJoinTunnel()

	member, hubToken := f.tokenSecret(), f.agentTokenSecret()
	identity := "switchboard-agent-" + testName
	assertChanges(t, res.Changes,
		"created ValidatingAdmissionPolicy "+GuardName,
		"created ValidatingAdmissionPolicyBinding "+GuardName,
		"created Namespace switchboard-system",
		"created ServiceAccount switchboard-system/switchboard-impersonator",
		"created ClusterRole switchboard:impersonator",
		"created ClusterRoleBinding switchboard:impersonator",
		"created Secret switchboard-system/"+member.Name,
		"created Secret switchboard-system/prod-credentials",
		"created ServiceAccount switchboard-system/"+identity,
		"created ClusterRole switchboard:agent:prod",
		"created ClusterRoleBinding switchboard:agent:prod",
		"created Secret switchboard-system/"+hubToken.Name,
		"created ServiceAccount switchboard-system/switchboard-agent",
		"created Secret switchboard-system/switchboard-agent-hub",
		"created Deployment switchboard-system/switchboard-agent",
		"created Cluster prod")
	if !strings.HasPrefix(hubToken.Name, identity+"-token-") || hubToken.Annotations[corev1.ServiceAccountNameKey] != identity {
		t.Errorf("hub token Secret %s for %q", hubToken.Name, hubToken.Annotations[corev1.ServiceAccountNameKey])
	}

	if got := f.cluster().Spec.Connection; got != v1alpha1.ConnectionTunnel {
		t.Errorf("Cluster connection %q, want Tunnel", got)
	}

	// On the hub: the agent's identity may open this Cluster's tunnel and
	// do nothing else.
	assertManaged(t, found(f.hub.CoreV1().ServiceAccounts(DefaultHubNamespace).Get(ctx, identity, metav1.GetOptions{}))(t))
	role := found(f.hub.RbacV1().ClusterRoles().Get(ctx, names.AgentRole(testName), metav1.GetOptions{}))(t)
	wantRules := []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"clusters/attach"}, Verbs: []string{"create"}, ResourceNames: []string{testName}}}
	if !reflect.DeepEqual(role.Rules, wantRules) {
		t.Errorf("agent role rules %+v, want %+v", role.Rules, wantRules)
	}
	binding := found(f.hub.RbacV1().ClusterRoleBindings().Get(ctx, names.AgentRole(testName), metav1.GetOptions{}))(t)
	wantSubjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: identity, Namespace: DefaultHubNamespace}}
	if !reflect.DeepEqual(binding.Subjects, wantSubjects) || binding.RoleRef.Name != role.Name {
		t.Errorf("agent binding %+v -> %s, want %+v -> %s", binding.Subjects, binding.RoleRef.Name, wantSubjects, role.Name)
	}

	// In the member: the agent's kubeconfig holds the hub token, for the
	// hub as the agent reaches it, with the CA the hub kubeconfig trusts.
	credential := found(f.member.CoreV1().Secrets(Namespace).Get(ctx, names.AgentHubCredential, metav1.GetOptions{}))(t)
	assertManaged(t, credential)
	kubeconfig, err := clientcmd.Load(credential.Data[names.AgentHubKubeconfigKey])
	if err != nil {
		t.Fatalf("the agent's kubeconfig: %v", err)
	}
	config, err := clientcmd.NewDefaultClientConfig(*kubeconfig, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if config.Host != agentHubServer || config.BearerToken != string(tokenFor(hubToken.Name)) || string(config.CAData) != string(hubKubeconfigCA) {
		t.Errorf("agent kubeconfig: server %s, token %q, CA %q; want %s, the hub token, the hub kubeconfig's CA",
			config.Host, config.BearerToken, config.CAData, agentHubServer)
	}
	if len(credential.Data) != 1 {
		t.Errorf("the agent's Secret holds %d keys, want only %s", len(credential.Data), names.AgentHubKubeconfigKey)
	}
	account := found(f.member.CoreV1().ServiceAccounts(Namespace).Get(ctx, names.AgentServiceAccount, metav1.GetOptions{}))(t)
	if account.AutomountServiceAccountToken == nil || *account.AutomountServiceAccountToken {
		t.Error("the agent's member ServiceAccount mounts a token the agent never uses")
	}
	d := found(f.member.AppsV1().Deployments(Namespace).Get(ctx, names.Agent, metav1.GetOptions{}))(t)
	assertManaged(t, d)
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != agentImage || !slices.Contains(c.Args, "--cluster="+testName) || !slices.Contains(c.Args, "--server-count=2") {
		t.Errorf("agent container: image %s, args %q", c.Image, c.Args)
	}
	if v := d.Spec.Template.Spec.Volumes; len(v) != 1 || v[0].Secret == nil || v[0].Secret.SecretName != names.AgentHubCredential {
		t.Errorf("agent volumes %+v, want the Secret %s", v, names.AgentHubCredential)
	}
}

func TestJoinTunnelAgainChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.mustJoinTunnel()
	f.clearActions()
	f.checkedWith = nil
	hubToken := f.agentTokenSecret()

	res := f.mustJoinTunnel()
	if !res.AlreadyAuthorized {
		t.Errorf("AlreadyAuthorized = false on a second join; changes %q", changeStrings(res.Changes))
	}
	assertNoWrites(t, f)
	if !slices.ContainsFunc(f.checkedWith, func(token []byte) bool { return string(token) == string(tokenFor(hubToken.Name)) }) {
		t.Errorf("the agent's hub token was not checked: checks %q", f.checkedWith)
	}
}

// A hub token that no longer authenticates (its ServiceAccount was
// recreated) is replaced, and the agent's kubeconfig in the member gets
// the new one.
func TestJoinTunnelRepairsTheAgentsToken(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.mustJoinTunnel()
	old := f.agentTokenSecret()
	f.checkAgentToken = rejectToken(old, apierrors.NewUnauthorized("invalid bearer token"))
	f.clearActions()

	f.mustJoinTunnel()
	fresh := f.agentTokenSecret()
	if fresh.Name == old.Name {
		t.Fatalf("the agent's token Secret %s was kept", old.Name)
	}
	credential := found(f.member.CoreV1().Secrets(Namespace).Get(ctx, names.AgentHubCredential, metav1.GetOptions{}))(t)
	if !strings.Contains(string(credential.Data[names.AgentHubKubeconfigKey]), string(tokenFor(fresh.Name))) {
		t.Errorf("the agent's kubeconfig does not hold the new token %s", tokenFor(fresh.Name))
	}
	// The agent reads its kubeconfig when it starts: the pods roll.
	assertWrites(t, f.memberWrites(), "patch secrets "+names.AgentHubCredential, "patch deployments "+names.Agent)
	d := found(f.member.AppsV1().Deployments(Namespace).Get(ctx, names.Agent, metav1.GetOptions{}))(t)
	if got, want := d.Spec.Template.Annotations[KubeconfigHashAnnotation], hashOf(credential.Data[names.AgentHubKubeconfigKey]); got != want {
		t.Errorf("pod template annotation %s = %q, want %q, the new kubeconfig's", KubeconfigHashAnnotation, got, want)
	}
}

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// A Cluster re-pointed at another member (--overwrite) gets a new agent
// token: the old member's agent must not go on serving it.
func TestJoinTunnelRepointReplacesTheAgentsToken(t *testing.T) {
	f := newFixture(t)
	f.mustJoinTunnel()
	old := f.agentTokenSecret()

	other := newFixture(t) // the other member, with the same hub
	other.hub, other.hubTokens, other.sb, other.clusters = f.hub, f.hubTokens, f.sb, f.clusters
	o := other.tunnelOptions()
	o.Endpoint, o.Overwrite = "https://other-member.example:6443", true
	res, err := other.joinWith(o)
	if err != nil {
		t.Fatal(err)
	}
	fresh := f.agentTokenSecret()
	if fresh.Name == old.Name {
		t.Fatalf("the agent's token Secret %s was kept for the new member", old.Name)
	}
	if _, err := f.hub.CoreV1().Secrets(DefaultHubNamespace).Get(context.Background(), old.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the old member's token Secret %s: %v, want deleted", old.Name, err)
	}
	if got := strings.Join(changeStrings(res.Changes), "\n"); !strings.Contains(got, "corrected Secret switchboard-system/"+fresh.Name) {
		t.Errorf("changes:\n%s", got)
	}
}

// A rollback puts back what join changed on the hub, but not rights
// someone added to the agent's hub identity: those stay removed.
func TestJoinTunnelRollbackKeepsTheAgentsRoleNarrow(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.mustJoinTunnel()
	role := found(f.hub.RbacV1().ClusterRoles().Get(ctx, names.AgentRole(testName), metav1.GetOptions{}))(t)
	role.Rules[0].ResourceNames = append(role.Rules[0].ResourceNames, "member2")
	role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
	mustUpdate(t)(f.hub.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}))
	f.verifyErr = errors.New("the member did not answer")

	_, err := f.joinWith(f.tunnelOptions())
	var joinErr *Error
	if !errors.As(err, &joinErr) {
		t.Fatalf("Join: %v, want an *Error", err)
	}
	role = found(f.hub.RbacV1().ClusterRoles().Get(ctx, names.AgentRole(testName), metav1.GetOptions{}))(t)
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].ResourceNames, []string{testName}) {
		t.Errorf("after the rollback the agent's role is %+v, want only its own tunnel", role.Rules)
	}
	if !slices.ContainsFunc(joinErr.Repaired, func(c Change) bool { return c.Object == "ClusterRole "+names.AgentRole(testName) }) {
		t.Errorf("repairs %q do not name the agent's role", changeStrings(joinErr.Repaired))
	}
}

func TestJoinTunnelNames(t *testing.T) {
	for _, tc := range []struct {
		name, want string
	}{
		{strings.Repeat("a", 240), "cannot name a Cluster reached through a tunnel"},
		{"Edge_1", "is not a valid cluster name"},
	} {
		f := newFixture(t)
		o := f.tunnelOptions()
		o.Name = tc.name
		_, err := f.joinWith(o)
		assertErrorContains(t, err, tc.want)
		assertNoWrites(t, f)
	}
}

// covers, item by item: what the API server adds to a list's items is
// no change; a missing or different item, or a different scalar, is.
func TestCoversElementwise(t *testing.T) {
	declared := map[string]any{"spec": map[string]any{
		"containers": []any{map[string]any{"name": "a", "args": []any{"--x"}}},
	}}
	for _, tc := range []struct {
		name string
		have map[string]any
		want bool
	}{
		{"defaults added to the item", map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "a", "args": []any{"--x"}, "terminationMessagePath": "/dev/termination-log"}},
		}}, true},
		{"a second item", map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "a", "args": []any{"--x"}}, map[string]any{"name": "b"}},
		}}, false},
		{"an argument changed", map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "a", "args": []any{"--y"}}},
		}}, false},
		{"an argument added", map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "a", "args": []any{"--x", "--y"}}},
		}}, false},
		{"no containers", map[string]any{"spec": map[string]any{}}, false},
	} {
		if got := covers(tc.have, declared, true); got != tc.want {
			t.Errorf("%s: covers = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Without elementwise, lists compare whole: RBAC rules with a field
	// added are a change.
	rules := map[string]any{"rules": []any{map[string]any{"verbs": []any{"create"}}}}
	wider := map[string]any{"rules": []any{map[string]any{"verbs": []any{"create"}, "resourceNames": []any{"x"}}}}
	if covers(wider, rules, false) {
		t.Error("a rule with a field added covers the declared rule")
	}
}

func TestJoinTunnelRefusesAMemberWhoseAgentServesAnotherCluster(t *testing.T) {
	other := as[appsv1.Deployment](agentObjects("other", DefaultHubNamespace, &agentDeclaration{Agent: Agent{Image: agentImage}},
		map[string]string{ManagedByLabel: ManagedByValue})[6])
	f := newFixture(t, other)
	_, err := f.joinWith(f.tunnelOptions())
	assertErrorContains(t, err, `Deployment switchboard-system/switchboard-agent in the member serves Cluster "other"`, "unjoin other first")
	assertNoWrites(t, f)
}

func TestJoinTunnelPreflight(t *testing.T) {
	f := newFixture(t)
	f.hubDenied["create clusters.cluster.switchboard.io/attach prod"] = true
	f.hubDenied["create serviceaccounts in namespace switchboard-system"] = true
	f.memberDenied["create deployments.apps in namespace switchboard-system"] = true
	_, err := f.joinWith(f.tunnelOptions())
	assertErrorContains(t, err, "create deployments.apps in namespace switchboard-system")
	delete(f.memberDenied, "create deployments.apps in namespace switchboard-system")
	_, err = f.joinWith(f.tunnelOptions())
	assertErrorContains(t, err, "create clusters.cluster.switchboard.io/attach prod", "create serviceaccounts in namespace switchboard-system")
	assertNoWrites(t, f)
}

func TestJoinTunnelRefusesADirectConnection(t *testing.T) {
	f := newFixture(t)
	o := f.tunnelOptions()
	o.Connection = v1alpha1.ConnectionDirect
	_, err := f.joinWith(o)
	assertErrorContains(t, err, "only a Cluster reached through a tunnel")
	assertNoWrites(t, f)
}

func TestJoinTunnelFailureRollsBackTheAgent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.verifyErr = apierrors.NewServiceUnavailable(`no switchboard-agent is connected for cluster "prod"`)
	_, err := f.joinWith(f.tunnelOptions())
	assertErrorContains(t, err, "no switchboard-agent is connected")
	for what, err := range map[string]error{
		"hub ServiceAccount":    ignoreFound(f.hub.CoreV1().ServiceAccounts(DefaultHubNamespace).Get(ctx, names.AgentHubIdentity(testName), metav1.GetOptions{})),
		"hub ClusterRole":       ignoreFound(f.hub.RbacV1().ClusterRoles().Get(ctx, names.AgentRole(testName), metav1.GetOptions{})),
		"member Deployment":     ignoreFound(f.member.AppsV1().Deployments(Namespace).Get(ctx, names.Agent, metav1.GetOptions{})),
		"member hub credential": ignoreFound(f.member.CoreV1().Secrets(Namespace).Get(ctx, names.AgentHubCredential, metav1.GetOptions{})),
	} {
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s after the rollback: %v, want not found", what, err)
		}
	}
	if s, _ := findTokenSecret(ctx, agentAccount(f.hub, DefaultHubNamespace, testName, nil)); s != nil {
		t.Errorf("the agent's hub token Secret %s was left behind", s.Name)
	}
}

func ignoreFound[T any](_ T, err error) error { return err }

func TestUnjoinRemovesTheAgent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.mustJoinTunnel()
	hubToken, memberToken := f.agentTokenSecret(), f.tokenSecret()

	changes, err := Unjoin(ctx, f.unjoinOptions(true))
	if err != nil {
		t.Fatal(err)
	}
	assertChanges(t, changes,
		"deleted Cluster prod",
		"deleted ClusterRoleBinding switchboard:agent:prod on the hub",
		"deleted ClusterRole switchboard:agent:prod on the hub",
		"deleted Secret switchboard-system/"+hubToken.Name+" on the hub",
		"deleted ServiceAccount switchboard-system/switchboard-agent-prod on the hub",
		"deleted Secret switchboard-system/prod-credentials on the hub",
		"deleted ValidatingAdmissionPolicyBinding "+GuardName,
		"deleted ValidatingAdmissionPolicy "+GuardName,
		"deleted Deployment switchboard-system/switchboard-agent",
		"deleted Secret switchboard-system/switchboard-agent-hub",
		"deleted ServiceAccount switchboard-system/switchboard-agent",
		"deleted ClusterRoleBinding switchboard:impersonator",
		"deleted ClusterRole switchboard:impersonator",
		"deleted Secret switchboard-system/"+memberToken.Name,
		"deleted ServiceAccount switchboard-system/switchboard-impersonator",
		"deleted Namespace switchboard-system")
}

func TestUnjoinKeepsAnAgentThatServesAnotherCluster(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	o := f.tunnelOptions()
	o.Name = "other"
	if _, err := f.joinWith(o); err != nil {
		t.Fatal(err)
	}
	f.mustJoin() // prod, direct, on the same member
	f.clearActions()

	changes, err := Unjoin(ctx, f.unjoinOptions(true))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(changeStrings(changes), "\n")
	if !strings.Contains(got, `kept the member's switchboard-agent and namespace switchboard-system: it serves Cluster "other", not "prod"`) {
		t.Errorf("changes do not say the agent stays:\n%s", got)
	}
	for _, w := range f.memberWrites() {
		if strings.Contains(w, "switchboard-agent") {
			t.Errorf("unjoin of prod touched other's agent: %s", w)
		}
	}
	found(f.member.AppsV1().Deployments(Namespace).Get(ctx, names.Agent, metav1.GetOptions{}))(t)
}

// The agent's objects come from artifacts/agent. Every Cluster name is a
// DNS subdomain, and some (1e3, true, 0x10) read as numbers or booleans in
// YAML unless the files quote them.
func TestAgentManifestsDecodeForEveryClusterName(t *testing.T) {
	for _, name := range []string{"edge1", "1e3", "true", "0x10", "a.b-c"} {
		checks := []struct {
			file, kind string
			decode     func() (any, error)
		}{
			{agentHubManifest, "ServiceAccount", func() (any, error) {
				return decodeManifest[corev1ac.ServiceAccountApplyConfiguration](agentHubManifest, "ServiceAccount", name)
			}},
			{agentHubManifest, "ClusterRole", func() (any, error) {
				return decodeManifest[rbacac.ClusterRoleApplyConfiguration](agentHubManifest, "ClusterRole", name)
			}},
			{agentHubManifest, "ClusterRoleBinding", func() (any, error) {
				return decodeManifest[rbacac.ClusterRoleBindingApplyConfiguration](agentHubManifest, "ClusterRoleBinding", name)
			}},
			{agentAccountManifest, "ServiceAccount", func() (any, error) {
				return decodeManifest[corev1ac.ServiceAccountApplyConfiguration](agentAccountManifest, "ServiceAccount", name)
			}},
			{agentDeploymentManifest, "Deployment", func() (any, error) {
				return decodeManifest[appsv1ac.DeploymentApplyConfiguration](agentDeploymentManifest, "Deployment", name)
			}},
		}
		for _, c := range checks {
			if _, err := c.decode(); err != nil {
				t.Errorf("cluster %q: %s in %s: %v", name, c.kind, c.file, err)
			}
		}
		objs := agentObjects(name, DefaultHubNamespace, &agentDeclaration{Agent: Agent{Image: agentImage}}, nil)
		if rules := as[rbacv1.ClusterRole](objs[1]).Rules; len(rules) != 1 || !slices.Equal(rules[0].ResourceNames, []string{name}) {
			t.Errorf("cluster %q: the agent's role names %+v", name, rules)
		}
		if d := as[appsv1.Deployment](objs[6]); agentCluster(d) != name {
			t.Errorf("cluster %q: the agent's Deployment serves %q", name, agentCluster(d))
		}
	}
	if _, err := decodeManifest[rbacac.ClusterRoleApplyConfiguration](agentHubManifest, "Ingress", "edge1"); err == nil {
		t.Error("decoding a kind the file lacks did not fail")
	}
	type narrow struct {
		Kind string `json:"kind"`
	}
	if _, err := decodeManifest[narrow](agentHubManifest, "ClusterRole", "edge1"); err == nil {
		t.Error("decoding into a type without the file's fields did not fail: unknown fields pass unseen")
	}
}

func TestPlanOfATunnelledMember(t *testing.T) {
	out, docs := writePlan(t, Plan(testName, memberHost, "", false, &Agent{Image: agentImage, ServerCount: 3}, nil))
	var kinds []string
	for _, d := range docs {
		kinds = append(kinds, d.where+" "+d.obj["kind"].(string))
	}
	want := []string{"member ValidatingAdmissionPolicy", "member ValidatingAdmissionPolicyBinding", "member Namespace", "member ServiceAccount", "member ClusterRole", "member ClusterRoleBinding", "member Secret",
		"hub Secret", "hub ServiceAccount", "hub ClusterRole", "hub ClusterRoleBinding", "hub Secret",
		"member ServiceAccount", "member Secret", "member Deployment", "hub Cluster"}
	if !slices.Equal(kinds, want) {
		t.Errorf("plan holds\n  %q\nwant\n  %q", kinds, want)
	}
	for _, part := range []string{"connection: Tunnel", "image: " + agentImage, "--server-count=3", "--cluster=" + testName} {
		if !strings.Contains(out, part) {
			t.Errorf("the plan lacks %q", part)
		}
	}
}

// Unjoin keeps the member's namespace while the agent in it serves
// another Cluster, even when nothing else keeps it: deleting the
// namespace would delete that agent with it.
func TestUnjoinKeepsTheNamespaceOfAnotherClustersAgent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	o := f.tunnelOptions()
	o.Name = "other"
	if _, err := f.joinWith(o); err != nil {
		t.Fatal(err)
	}
	// Cluster other and its Secret went by hand; its agent stays.
	if err := f.sb.ClusterV1alpha1().Clusters().Delete(ctx, "other", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.hub.CoreV1().Secrets(DefaultHubNamespace).Delete(ctx, SecretName("other"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.mustJoin()

	changes, err := Unjoin(ctx, f.unjoinOptions(true))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(changeStrings(changes), "\n")
	if strings.Contains(got, "deleted Namespace") {
		t.Errorf("unjoin deleted the namespace of other's agent:\n%s", got)
	}
	if !strings.Contains(got, "deleted ServiceAccount switchboard-system/switchboard-impersonator") {
		t.Errorf("unjoin kept the impersonator nobody uses:\n%s", got)
	}
	// The guard stays for the agent and its namespace.
	policy, err := f.member.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, GuardName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := policy.Spec.MatchConditions[0].Expression; !strings.Contains(m, `"namespaces": ["switchboard-system"]`) || !strings.Contains(m, `"deployments": ["switchboard-agent"]`) {
		t.Errorf("the guard that stays matches %s, want the agent and its namespace", m)
	}
	found(f.member.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}))(t)
}
