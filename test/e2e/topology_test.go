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
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/switchboard-io/switchboard/test/e2e/framework"
)

// TestSwitchboardIsRegistered: the hub's aggregator serves switchboard's API,
// discovery lists it, and kubectl explain reads its OpenAPI through the hub.
func TestSwitchboardIsRegistered(t *testing.T) {
	hub := f.State.Hub.Kubeconfig

	out := framework.MustKubectl(t, hub, "get", "apiservice", "v1alpha1.cluster.switchboard.io")
	if !strings.Contains(out, "switchboard-system/switchboard-apiserver") || !strings.Contains(out, "True") {
		t.Errorf("APIService is not Available:\n%s", out)
	}

	out = framework.MustKubectl(t, hub, "api-resources", "--api-group=cluster.switchboard.io", "-o", "wide")
	if !strings.Contains(out, "clusters") || !strings.Contains(out, "cluster.switchboard.io/v1alpha1") || !strings.Contains(out, "Cluster") {
		t.Errorf("api-resources does not list clusters:\n%s", out)
	}

	out = framework.MustKubectl(t, hub, "explain", "clusters.spec")
	for _, want := range []string{"KIND:", "Cluster", "endpoint", "credentialsSecretRef", "proxyURL", "URL of the member's API server"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain clusters.spec lacks %q:\n%s", want, out)
		}
	}
}

const clusterManifest = `apiVersion: cluster.switchboard.io/v1alpha1
kind: Cluster
metadata:
  name: NAME
spec:
  endpoint: https://10.0.0.12:6443
  credentialsSecretRef:
    name: NAME-credentials
`

// TestClusterRBACThroughHub: what a user may do with Clusters is what the
// hub's RBAC grants them, checked by switchboard with a SubjectAccessReview.
func TestClusterRBACThroughHub(t *testing.T) {
	editorRule := rbacv1.PolicyRule{
		APIGroups: []string{"cluster.switchboard.io"},
		Resources: []string{"clusters"},
		Verbs:     []string{"create", "get", "list", "delete"},
	}
	users := map[string]*framework.User{
		"certificate user":     f.CertificateUser(t, "alice", "platform-team"),
		"service account user": f.ServiceAccountUser(t, "cluster-editor"),
	}
	for kind, editor := range users {
		t.Run(kind, func(t *testing.T) {
			name := "rbac-" + strings.ReplaceAll(kind, " ", "-")
			manifest := filepath.Join(t.TempDir(), "cluster.yaml")
			if err := os.WriteFile(manifest, []byte(strings.ReplaceAll(clusterManifest, "NAME", name)), 0o600); err != nil {
				t.Fatal(err)
			}

			// Without RBAC: 403 from the hub's authorization, through switchboard.
			r := framework.Kubectl(t, editor.Kubeconfig, "create", "-f", manifest)
			if r.Err == nil || !strings.Contains(r.Stderr, "forbidden") || !strings.Contains(r.Stderr, `cannot create resource "clusters"`) {
				t.Fatalf("create without RBAC: err=%v stderr=%s", r.Err, r.Stderr)
			}
			r = framework.Kubectl(t, editor.Kubeconfig, "get", "clusters")
			if r.Err == nil || !strings.Contains(r.Stderr, "forbidden") {
				t.Fatalf("get without RBAC: err=%v stderr=%s", r.Err, r.Stderr)
			}

			f.Grant(t, editor.Name, editorRule)
			// RBAC reaches switchboard through SubjectAccessReview, whose
			// answers are cached briefly; allow for that.
			var out string
			eventually(t, 30*time.Second, func() error {
				r := framework.Kubectl(t, editor.Kubeconfig, "create", "-f", manifest)
				if r.Err != nil {
					return &kubectlError{r}
				}
				out = r.Stdout
				return nil
			})
			if !strings.Contains(out, "cluster.cluster.switchboard.io/"+name+" created") {
				t.Errorf("create: %s", out)
			}
			out = framework.MustKubectl(t, editor.Kubeconfig, "get", "clusters", name)
			// No Secret exists for it: READY is Unknown until the first
			// probe, then False (CredentialsMissing).
			for _, want := range []string{"NAME", "ENDPOINT", "READY", "VERSION", "AGE", name, "https://10.0.0.12:6443"} {
				if !strings.Contains(out, want) {
					t.Errorf("kubectl get clusters lacks %q:\n%s", want, out)
				}
			}
			// The grant does not include update.
			r = framework.Kubectl(t, editor.Kubeconfig, "label", "cluster", name, "team=a")
			if r.Err == nil || !strings.Contains(r.Stderr, "forbidden") {
				t.Errorf("label without the patch verb: err=%v stderr=%s", r.Err, r.Stderr)
			}
			out = framework.MustKubectl(t, editor.Kubeconfig, "delete", "cluster", name)
			if !strings.Contains(out, `"`+name+`" deleted`) {
				t.Errorf("delete: %s", out)
			}
		})
	}
}

// TestMembersBehaveLikeClusters: each member, reached directly, has Ready
// kwok nodes and running pods that answer exec and logs.
func TestMembersBehaveLikeClusters(t *testing.T) {
	for _, m := range f.State.Members {
		t.Run(m.Name, func(t *testing.T) {
			if len(m.Pods) == 0 {
				t.Fatalf("the topology made no pod in %s", m.Name)
			}
			pod := m.Pods[0]

			out := framework.MustKubectl(t, m.Kubeconfig, "get", "nodes")
			for _, node := range m.Nodes {
				if !lineHas(out, node, "Ready") {
					t.Errorf("node %s is not Ready:\n%s", node, out)
				}
			}

			out = framework.MustKubectl(t, m.Kubeconfig, "get", "pod", pod, "-n", m.PodNamespace)
			if !lineHas(out, pod, "Running") {
				t.Errorf("pod %s is not Running:\n%s", pod, out)
			}

			for _, transport := range []struct {
				name string
				env  []string
			}{
				{"websocket", nil},
				{"spdy", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}},
			} {
				r := framework.KubectlWithEnv(t, m.Kubeconfig, transport.env, "exec", "-n", m.PodNamespace, pod, "--", "echo", "hello from "+m.Name)
				if r.Err != nil || strings.TrimSpace(r.Stdout) != "hello from "+m.Name {
					t.Errorf("exec over %s: err=%v stdout=%q stderr=%q", transport.name, r.Err, r.Stdout, r.Stderr)
				}
			}

			out = framework.MustKubectl(t, m.Kubeconfig, "logs", "-n", m.PodNamespace, pod)
			if !strings.Contains(out, "log line") {
				t.Errorf("kubectl logs returned %q", out)
			}
		})
	}
}

// TestLocalUpIsIdempotent runs make local-up while the topology runs: it
// reports what is up and starts nothing.
func TestLocalUpIsIdempotent(t *testing.T) {
	before := map[string]int{}
	for _, p := range f.State.Processes {
		before[p.Name] = p.PID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", framework.RepoRoot(), "--no-print-directory", "local-up")
	cmd.Env = append(os.Environ(), "SWITCHBOARD_RUN_DIR="+f.State.RunDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("second make local-up: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "already up; nothing was started") {
		t.Errorf("second make local-up did not report the running topology:\n%s", out)
	}
	again, err := loadState()
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Processes) != len(before) {
		t.Fatalf("processes: %d before, %d after", len(before), len(again.Processes))
	}
	for _, p := range again.Processes {
		if before[p.Name] != p.PID || !p.Alive() {
			t.Errorf("%s: pid %d before, %d after (alive: %v)", p.Name, before[p.Name], p.PID, p.Alive())
		}
	}
}

// TestHubAdminSeesSwitchboardObjects: the registration objects exist as an
// administrator would have made them.
func TestHubAdminSeesSwitchboardObjects(t *testing.T) {
	hub := f.Hub(t)
	ctx := context.Background()
	svc, err := hub.CoreV1().Services("switchboard-system").Get(ctx, "switchboard-apiserver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ExternalName != "localhost" {
		t.Errorf("Service externalName = %q", svc.Spec.ExternalName)
	}
	if _, err := hub.RbacV1().RoleBindings("kube-system").Get(ctx, "switchboard:extension-apiserver-authentication-reader", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := hub.RbacV1().ClusterRoleBindings().Get(ctx, "switchboard:auth-delegator", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
}

// TestSwitchboardDelegatesAuthToHub calls switchboard directly, as the hub's
// aggregator does, to show that switchboard itself authenticates the
// aggregator by its front-proxy certificate (request-header configuration
// read from the hub) and authorizes the named user with a
// SubjectAccessReview to the hub.
func TestSwitchboardDelegatesAuthToHub(t *testing.T) {
	url := f.State.Switchboard.URL + "/apis/cluster.switchboard.io/v1alpha1/clusters"
	asAggregator := directClient(t, f.State.FrontProxy.ClientCert, f.State.FrontProxy.ClientKey)
	user := "carol-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	headers := map[string]string{"X-Remote-User": user, "X-Remote-Group": "system:authenticated"}

	code, body := directGet(t, asAggregator, url, headers)
	if code != http.StatusForbidden || !strings.Contains(body, `User \"`+user+`\" cannot list resource \"clusters\"`) {
		t.Fatalf("as the aggregator for %s without RBAC: %d %s", user, code, body)
	}

	f.Grant(t, user, rbacv1.PolicyRule{APIGroups: []string{"cluster.switchboard.io"}, Resources: []string{"clusters"}, Verbs: []string{"list"}})
	// Switchboard caches denials for --authorization-webhook-cache-unauthorized-ttl (10s).
	eventually(t, 30*time.Second, func() error {
		if code, body := directGet(t, asAggregator, url, headers); code != http.StatusOK {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})

	// The same headers from a caller without the front-proxy certificate
	// are not trusted: the caller is anonymous.
	anonymous := directClient(t, "", "")
	forged := map[string]string{"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}
	code, body = directGet(t, anonymous, url, forged)
	if code != http.StatusForbidden || !strings.Contains(body, "system:anonymous") {
		t.Fatalf("forged identity headers without the front-proxy certificate: %d %s", code, body)
	}
}

// directClient reaches switchboard without the hub, trusting its serving CA,
// presenting the given client certificate if any.
func directClient(t *testing.T, certFile, keyFile string) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(f.State.Switchboard.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	config := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: config}, Timeout: 30 * time.Second}
}

func directGet(t *testing.T, client *http.Client, url string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
