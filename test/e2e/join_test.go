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
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
)

// plugin runs kubectl switchboard, found on the PATH as kubectl finds plugins,
// against the hub.
func plugin(t *testing.T, args ...string) framework.KubectlResult {
	t.Helper()
	return framework.KubectlArgs(t, nil, append([]string{"switchboard", "--kubeconfig", f.State.Hub.Kubeconfig}, args...)...)
}

func mustPlugin(t *testing.T, args ...string) string {
	t.Helper()
	r := plugin(t, args...)
	if r.Err != nil {
		t.Fatalf("kubectl switchboard %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// TestJoinLifecycle drives the real kubectl-switchboard binary as a kubectl
// plugin: join, join again, repair, an unreachable member, kubeconfig,
// unjoin twice, and what the member identity may do.
func TestJoinLifecycle(t *testing.T) {
	// The topology joined every member already, with the same code.
	for _, m := range f.State.Members {
		out := mustPlugin(t, "join", m.Name, "--member-kubeconfig", m.Kubeconfig)
		if !strings.Contains(out, `Cluster "`+m.Name+`" is already authorized; nothing changed.`) || !strings.Contains(out, "Verified: GET") {
			t.Errorf("second join of %s:\n%s", m.Name, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "  unchanged ") {
				t.Errorf("second join of %s changed something: %q", m.Name, line)
			}
		}
	}

	member1, err := f.State.Member("member1")
	if err != nil {
		t.Fatal(err)
	}
	memberAdmin := f.Member(t, "member1")
	ctx := context.Background()

	t.Run("a deleted token is repaired", func(t *testing.T) {
		if err := memberAdmin.CoreV1().Secrets(join.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: join.ManagedByLabel + "=" + join.ManagedByValue}); err != nil {
			t.Fatal(err)
		}
		out := mustPlugin(t, "join", "member1", "--member-kubeconfig", member1.Kubeconfig)
		if !regexp.MustCompile(`created Secret switchboard-system/switchboard-impersonator-token-\w+`).MatchString(out) ||
			!strings.Contains(out, "corrected Secret switchboard-system/member1-credentials") ||
			!strings.Contains(out, `Cluster "member1" is joined.`) {
			t.Errorf("join after the token was deleted:\n%s", out)
		}
	})

	t.Run("an edited role is corrected", func(t *testing.T) {
		role, err := memberAdmin.RbacV1().ClusterRoles().Get(ctx, join.ClusterRoleName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		role.Rules = append(role.Rules, role.Rules[0])
		role.Rules[len(role.Rules)-1].Verbs = []string{"get", "list"}
		role.Rules[len(role.Rules)-1].Resources = []string{"secrets"}
		if _, err := memberAdmin.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		out := mustPlugin(t, "join", "member1", "--member-kubeconfig", member1.Kubeconfig)
		if !strings.Contains(out, "corrected ClusterRole "+join.ClusterRoleName) {
			t.Errorf("join after the role was edited:\n%s", out)
		}
	})

	t.Run("an unreachable member is reported, nothing is made", func(t *testing.T) {
		data, err := os.ReadFile(member1.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		unreachable := regexp.MustCompile(`server: https://127\.0\.0\.1:\d+`).ReplaceAllString(string(data), "server: https://127.0.0.1:1")
		path := filepath.Join(t.TempDir(), "unreachable.kubeconfig")
		if err := os.WriteFile(path, []byte(unreachable), 0o600); err != nil {
			t.Fatal(err)
		}
		r := plugin(t, "join", "member-gone", "--member-kubeconfig", path)
		if r.Err == nil || !strings.Contains(r.Stderr, "https://127.0.0.1:1") || !strings.Contains(r.Stderr, "connection was refused") {
			t.Fatalf("join of an unreachable member: err=%v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
		}
		if _, err := f.Switchboard(t).ClusterV1alpha1().Clusters().Get(ctx, "member-gone", metav1.GetOptions{}); err == nil {
			t.Error("a Cluster was created for the unreachable member")
		}
	})

	t.Run("the kubeconfig command drives kubectl on the member", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "member2.kubeconfig")
		r := plugin(t, "kubeconfig", "member2", "--output-file", path, "--context-name", "m2")
		if r.Err != nil {
			t.Fatalf("kubeconfig: %v %s", r.Err, r.Stderr)
		}
		out := framework.MustKubectl(t, path, "get", "nodes")
		if !strings.Contains(out, "member2-node-0") {
			t.Errorf("get nodes with the printed kubeconfig: %s", out)
		}
		out = framework.MustKubectl(t, path, "config", "current-context")
		if strings.TrimSpace(out) != "m2" {
			t.Errorf("context = %q, want m2", out)
		}
	})

	t.Run("list shows working credentials", func(t *testing.T) {
		out := mustPlugin(t, "list")
		for _, m := range f.State.Members {
			if !lineHas(out, m.Name, m.URL, "works") {
				t.Errorf("list lacks a working %s:\n%s", m.Name, out)
			}
		}
	})

	t.Run("the member identity may only impersonate", func(t *testing.T) {
		impersonator := "system:serviceaccount:" + join.Namespace + ":" + join.ServiceAccountName
		granted := canIList(t, member1.Kubeconfig, impersonator)
		// What every authenticated identity may do anyway (discovery,
		// self-reviews), seen for a service account with no bindings.
		baseline := canIList(t, member1.Kubeconfig, "system:serviceaccount:"+join.Namespace+":nobody")
		var extra []string
		for line := range granted {
			if !baseline[line] {
				extra = append(extra, line)
			}
		}
		if len(extra) != 4 {
			t.Errorf("rules beyond every identity's: %q, want the 4 impersonate rules", extra)
		}
		for _, line := range extra {
			if !strings.HasSuffix(line, "[impersonate]") {
				t.Errorf("the member identity may do more than impersonate: %q", line)
			}
		}
	})

	t.Run("unjoin twice, then join again", func(t *testing.T) {
		out := mustPlugin(t, "unjoin", "member2", "--member-kubeconfig", f.MemberAdminKubeconfig(t, "member2"))
		for _, want := range []string{"deleted Cluster member2", "deleted Secret switchboard-system/member2-credentials on the hub",
			"deleted ClusterRole " + join.ClusterRoleName, "deleted Namespace " + join.Namespace, `Cluster "member2" is unjoined.`} {
			if !strings.Contains(out, want) {
				t.Errorf("unjoin lacks %q:\n%s", want, out)
			}
		}
		out = mustPlugin(t, "unjoin", "member2", "--member-kubeconfig", f.MemberAdminKubeconfig(t, "member2"))
		if !strings.Contains(out, `Cluster "member2" is not joined; nothing to remove.`) {
			t.Errorf("second unjoin:\n%s", out)
		}
		r := framework.Kubectl(t, f.State.Hub.Kubeconfig, "get", "--raw", proxyPrefix+"member2/proxy/version")
		if r.Err == nil || !strings.Contains(r.Stderr, "not found") {
			t.Errorf("member2 still reachable after unjoin: %v %s", r.Err, r.Stdout)
		}
		// Leave the topology as it was for the other tests.
		out = mustPlugin(t, "join", "member2", "--member-kubeconfig", f.MemberAdminKubeconfig(t, "member2"))
		if !strings.Contains(out, `Cluster "member2" is joined.`) {
			t.Errorf("join after unjoin:\n%s", out)
		}
	})

	t.Run("dry-run prints and changes nothing", func(t *testing.T) {
		out := mustPlugin(t, "join", "member-dry", "--member-kubeconfig", member1.Kubeconfig, "--dry-run=client")
		for _, want := range []string{"kind: ClusterRole", "kind: ClusterRoleBinding", "kind: ServiceAccount", "kind: Cluster", "name: member-dry-credentials", "# in the hub cluster"} {
			if !strings.Contains(out, want) {
				t.Errorf("dry-run output lacks %q", want)
			}
		}
		if _, err := f.Switchboard(t).ClusterV1alpha1().Clusters().Get(ctx, "member-dry", metav1.GetOptions{}); err == nil {
			t.Error("dry-run created a Cluster")
		}
	})
}

// canIList returns the lines of kubectl auth can-i --list for a user.
func canIList(t *testing.T, kubeconfig, user string) map[string]bool {
	t.Helper()
	out := framework.MustKubectl(t, kubeconfig, "auth", "can-i", "--list", "--as="+user)
	lines := map[string]bool{}
	for _, line := range strings.Split(out, "\n")[1:] {
		if fields := strings.Fields(line); len(fields) > 0 {
			lines[strings.Join(fields, " ")] = true
		}
	}
	return lines
}
