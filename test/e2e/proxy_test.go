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
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
	"github.com/switchboard-io/switchboard/test/topology"
)

const proxyPrefix = "/apis/cluster.switchboard.io/v1alpha1/clusters/"

// proxyRule grants the clusters/proxy subresource of the named clusters on the hub.
func proxyRule(clusters ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{
		APIGroups:     []string{"cluster.switchboard.io"},
		Resources:     []string{"clusters/proxy"},
		ResourceNames: clusters,
		Verbs:         []string{"*"},
	}
}

// TestProxyRBACJourney follows a service account on the hub that is allowed
// to use member1's proxy only: the hub decides who reaches which member, and
// the member's own RBAC decides what the caller may do there.
func TestProxyRBACJourney(t *testing.T) {
	sa := f.ServiceAccountUser(t, "proxy-user")
	f.Grant(t, sa.Name, proxyRule("member1"))

	var out string
	eventually(t, 30*time.Second, func() error {
		r := framework.Kubectl(t, sa.Kubeconfig, "get", "--raw", proxyPrefix+"member1/proxy/apis")
		if r.Err != nil {
			return &kubectlError{r}
		}
		out = r.Stdout
		return nil
	})
	if !strings.Contains(out, `"kind":"APIGroupList"`) {
		t.Fatalf("member1 discovery through the proxy: %s", out)
	}

	// Forbidden by member1, which names the caller, not switchboard.
	nodes := proxyPrefix + "member1/proxy/api/v1/nodes"
	r := framework.Kubectl(t, sa.Kubeconfig, "get", "--raw", nodes)
	if r.Err == nil || !strings.Contains(r.Stderr, `nodes is forbidden: User "`+sa.Name+`" cannot list resource "nodes"`) {
		t.Fatalf("nodes before member1 grants RBAC: err=%v stderr=%s", r.Err, r.Stderr)
	}
	if strings.Contains(r.Stderr, join.ServiceAccountName) {
		t.Errorf("the member judged switchboard's identity, not the caller's: %s", r.Stderr)
	}

	f.GrantInMember(t, "member1", sa.Name, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list"}})
	eventually(t, 30*time.Second, func() error {
		r := framework.Kubectl(t, sa.Kubeconfig, "get", "--raw", nodes)
		if r.Err != nil {
			return &kubectlError{r}
		}
		out = r.Stdout
		return nil
	})
	if !strings.Contains(out, "member1-node-0") {
		t.Errorf("nodes after member1 grants RBAC: %s", out)
	}

	// The member saw all of the caller: user, UID and extras, as the hub
	// authenticated them, with switchboard's identity only as impersonator.
	m, err := f.State.Member("member1")
	if err != nil {
		t.Fatal(err)
	}
	nsName := strings.Split(sa.Name, ":")
	account, err := f.Hub(t).CoreV1().ServiceAccounts(nsName[2]).Get(context.Background(), nsName[3], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		ev, err := findAudit(m.AuditLog, sa.Name, "nodes", "list")
		if err != nil {
			return err
		}
		if ev.ImpersonatedUser.UID != string(account.UID) {
			return fmt.Errorf("impersonated UID %q, want the service account's %q", ev.ImpersonatedUser.UID, account.UID)
		}
		if len(ev.ImpersonatedUser.Extra["authentication.kubernetes.io/credential-id"]) == 0 {
			return fmt.Errorf("the caller's extras did not reach the member: %v", ev.ImpersonatedUser.Extra)
		}
		for _, g := range []string{"system:serviceaccounts", "system:serviceaccounts:" + nsName[2], "system:authenticated"} {
			if !slices.Contains(ev.ImpersonatedUser.Groups, g) {
				return fmt.Errorf("impersonated groups %v lack %s", ev.ImpersonatedUser.Groups, g)
			}
		}
		return nil
	})

	// member2 is not in the hub grant: the hub refuses before switchboard.
	r = framework.Kubectl(t, sa.Kubeconfig, "get", "--raw", proxyPrefix+"member2/proxy/api/v1/nodes")
	if r.Err == nil || !strings.Contains(r.Stderr, `cannot get resource "clusters/proxy"`) || !strings.Contains(r.Stderr, "member2") {
		t.Fatalf("member2 without a hub grant: err=%v stderr=%s", r.Err, r.Stderr)
	}

	// An unknown cluster is a 404 that names it.
	f.Grant(t, sa.Name, proxyRule("no-such-cluster"))
	eventually(t, 30*time.Second, func() error {
		r := framework.Kubectl(t, sa.Kubeconfig, "get", "--raw", proxyPrefix+"no-such-cluster/proxy/api")
		if r.Err == nil {
			return fmt.Errorf("kubectl succeeded: stdout=%s", r.Stdout)
		}
		if !strings.Contains(r.Stderr, `clusters.cluster.switchboard.io "no-such-cluster" not found`) {
			return fmt.Errorf("%w: stderr=%s", r.Err, r.Stderr)
		}
		return nil
	})
}

// TestMemberKubeconfigEveryCommand uses a kubeconfig whose server is the
// hub plus member1's proxy path, and runs the kubectl commands people use.
func TestMemberKubeconfigEveryCommand(t *testing.T) {
	testEveryCommand(t, "member1")
}

// testEveryCommand runs the kubectl commands people use through a
// kubeconfig whose server is the hub plus the member's proxy path.
func testEveryCommand(t *testing.T, member string) {
	m, err := f.State.Member(member)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("dev-%d", time.Now().UnixNano())
	dev := f.CertificateUser(t, name, "developers")
	f.Grant(t, dev.Name, proxyRule(member))
	f.GrantInMember(t, member, dev.Name, rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}})
	kc := dev.MemberKubeconfig(t, member)
	ns := m.PodNamespace
	memberAdmin := f.Member(t, member)
	ctx := context.Background()

	eventually(t, 30*time.Second, func() error {
		if r := framework.Kubectl(t, kc, "get", "nodes"); r.Err != nil || !strings.Contains(r.Stdout, member+"-node-0") {
			return &kubectlError{r}
		}
		return nil
	})

	t.Run("get pods -w sees new pods", func(t *testing.T) {
		_, out := framework.StartKubectl(t, kc, nil, "get", "pods", "-n", ns, "-w")
		framework.WaitForOutput(t, out, "web-0", time.Minute)
		pod := newPod("watched-"+fmt.Sprint(time.Now().UnixNano()), m.Nodes[0])
		if _, err := memberAdmin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = memberAdmin.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{})
		})
		framework.WaitForOutput(t, out, pod.Name, time.Minute)
	})

	t.Run("apply then dry-run apply then delete", func(t *testing.T) {
		dir := t.TempDir()
		write := func(name string) string {
			path := filepath.Join(dir, name+".yaml")
			manifest := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  from: switchboard\n", name, ns)
			if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
		suffix := fmt.Sprint(time.Now().UnixNano())
		applied, dry := "applied-"+suffix, "dry-"+suffix
		out := framework.MustKubectl(t, kc, "apply", "-f", write(applied))
		if !strings.Contains(out, "configmap/"+applied+" created") {
			t.Errorf("apply: %s", out)
		}
		if _, err := memberAdmin.CoreV1().ConfigMaps(ns).Get(ctx, applied, metav1.GetOptions{}); err != nil {
			t.Errorf("applied ConfigMap not in %s: %v", member, err)
		}
		out = framework.MustKubectl(t, kc, "apply", "--dry-run=server", "-f", write(dry))
		if !strings.Contains(out, "configmap/"+dry+" created (server dry run)") {
			t.Errorf("apply --dry-run=server: %s", out)
		}
		if _, err := memberAdmin.CoreV1().ConfigMaps(ns).Get(ctx, dry, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("dry-run ConfigMap reached %s: %v", member, err)
		}
		out = framework.MustKubectl(t, kc, "delete", "configmap", applied, "-n", ns)
		if !strings.Contains(out, `configmap "`+applied+`" deleted`) {
			t.Errorf("delete: %s", out)
		}
		if _, err := memberAdmin.CoreV1().ConfigMaps(ns).Get(ctx, applied, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("deleted ConfigMap still in %s: %v", member, err)
		}
	})

	t.Run("logs and logs -f", func(t *testing.T) {
		out := framework.MustKubectl(t, kc, "logs", "-n", ns, m.Pods[0])
		if !strings.Contains(out, topology.LogLine+" 1 of "+member) {
			t.Errorf("logs: %q", out)
		}
		_, follow := framework.StartKubectl(t, kc, nil, "logs", "-f", "-n", ns, m.Pods[0])
		framework.WaitForOutput(t, follow, topology.LogLine+" 5 of "+member, time.Minute)
	})

	t.Run("exec", func(t *testing.T) {
		for transport, env := range map[string][]string{
			"websocket": nil,
			"spdy":      {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"},
		} {
			r := framework.KubectlWithEnv(t, kc, env, "exec", "-n", ns, m.Pods[0], "--", "echo", "hello through switchboard")
			if r.Err != nil || strings.TrimSpace(r.Stdout) != "hello through switchboard" {
				t.Errorf("exec over %s: err=%v stdout=%q stderr=%q", transport, r.Err, r.Stdout, r.Stderr)
			}
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		for transport, env := range map[string][]string{
			"websocket": nil,
			"spdy":      {"KUBECTL_PORT_FORWARD_WEBSOCKETS=false"},
		} {
			_, out := framework.StartKubectl(t, kc, env, "port-forward", "-n", ns, "pod/"+m.Pods[0], fmt.Sprintf(":%d", topology.EchoPort))
			framework.WaitForOutput(t, out, "Forwarding from 127.0.0.1:", time.Minute)
			port := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`).FindStringSubmatch(out.String())[1]
			conn, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", transport, err)
			}
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			msg := "ping over " + transport + "\n"
			if _, err := conn.Write([]byte(msg)); err != nil {
				t.Fatalf("%s: %v", transport, err)
			}
			got, err := bufio.NewReader(conn).ReadString('\n')
			_ = conn.Close()
			if err != nil || got != msg {
				t.Errorf("port-forward over %s: got %q (%v), want %q echoed", transport, got, err, msg)
			}
		}
	})

	t.Run("a watch outlives the request timeout", func(t *testing.T) {
		client := kubernetes.NewForConfigOrDie(dev.MemberConfig(t, member))
		w, err := client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "e2e=long-watch"})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		wait := topology.SwitchboardRequestTimeout + 10*time.Second
		select {
		case ev, ok := <-w.ResultChan():
			t.Fatalf("the watch ended or sent %v before anything happened (open: %v)", ev.Type, ok)
		case <-time.After(wait):
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late", Labels: map[string]string{"e2e": "long-watch"}}}
		if _, err := memberAdmin.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = memberAdmin.CoreV1().ConfigMaps(ns).Delete(context.Background(), "late", metav1.DeleteOptions{})
		})
		select {
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type != watch.Added {
				t.Fatalf("after %s: event %v (open: %v), want ADDED", wait, ev.Type, ok)
			}
		case <-time.After(time.Minute):
			t.Fatalf("no event within a minute of the create, after %s of quiet", wait)
		}
	})

	t.Run("member audit log names the caller", func(t *testing.T) {
		eventually(t, 30*time.Second, func() error {
			_, err := findAudit(m.AuditLog, dev.Name, "configmaps", "create")
			return err
		})
	})
}

// auditEvent is the part of a member's audit event the tests read.
type auditEvent struct {
	Verb string `json:"verb"`
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string              `json:"username"`
		UID      string              `json:"uid"`
		Groups   []string            `json:"groups"`
		Extra    map[string][]string `json:"extra"`
	} `json:"impersonatedUser"`
	ObjectRef *struct {
		Resource string `json:"resource"`
	} `json:"objectRef"`
}

// findAudit returns the last audit event in which switchboard's member
// identity did verb on resource as caller.
func findAudit(path, caller, resource, verb string) (*auditEvent, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	impersonator := "system:serviceaccount:" + join.Namespace + ":" + join.ServiceAccountName
	var found *auditEvent
	for _, line := range strings.Split(string(data), "\n") {
		ev := &auditEvent{}
		if json.Unmarshal([]byte(line), ev) != nil || ev.ImpersonatedUser == nil || ev.ObjectRef == nil {
			continue
		}
		if ev.Verb == verb && ev.ObjectRef.Resource == resource && ev.User.Username == impersonator && ev.ImpersonatedUser.Username == caller {
			found = ev
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no %s %s by %s as %s in %s", verb, resource, impersonator, caller, path)
	}
	return found, nil
}

func newPod(name, node string) *corev1.Pod {
	no := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                     node,
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
		},
	}
}
