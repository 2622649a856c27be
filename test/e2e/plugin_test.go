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
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/install"
	"github.com/switchboard-io/switchboard/pkg/join"
	"github.com/switchboard-io/switchboard/test/e2e/framework"
)

// completions runs kubectl's own shell completion for "kubectl <args>", as
// the shell does on <TAB>, and returns the choices without descriptions.
func completions(t *testing.T, args ...string) []string {
	t.Helper()
	r := framework.KubectlArgs(t, nil, append([]string{"__complete"}, args...)...)
	if r.Err != nil {
		t.Fatalf("kubectl __complete %q: %v\n%s", args, r.Err, r.Stderr)
	}
	var choices []string
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		choice, _, _ := strings.Cut(line, "\t")
		if !strings.HasPrefix(choice, ":") {
			choices = append(choices, choice)
		}
	}
	return choices
}

// TestPluginCompletion completes kubectl switchboard through the real
// kubectl, which runs kubectl_complete-switchboard from the PATH
// (hack/test-e2e.sh puts _output/bin there).
func TestPluginCompletion(t *testing.T) {
	if got := completions(t, "switchb"); !slices.Contains(got, "switchboard") {
		t.Errorf("kubectl does not offer the plugin: %q", got)
	}
	got := completions(t, "switchboard", "")
	for _, want := range []string{"join", "unjoin", "list", "kubeconfig", "install", "version"} {
		if !slices.Contains(got, want) {
			t.Errorf("kubectl switchboard <TAB> lacks %s: %q", want, got)
		}
	}
	got = completions(t, "switchboard", "list", "-o", "")
	for _, want := range []string{"wide", "json", "yaml", "name", "jsonpath"} {
		if !slices.Contains(got, want) {
			t.Errorf("kubectl switchboard list -o <TAB> lacks %s: %q", want, got)
		}
	}
	// Cluster names come from the hub --kubeconfig names.
	got = completions(t, "switchboard", "kubeconfig", "--kubeconfig", f.State.Hub.Kubeconfig, "")
	for _, m := range f.State.Members {
		if !slices.Contains(got, m.Name) {
			t.Errorf("kubectl switchboard kubeconfig <TAB> lacks %s: %q", m.Name, got)
		}
	}
}

// TestPluginListOutput prints the Clusters with cli-runtime's printers.
func TestPluginListOutput(t *testing.T) {
	list := &v1alpha1.ClusterList{}
	if err := json.Unmarshal([]byte(mustPlugin(t, "list", "-o", "json")), list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "ClusterList" || list.APIVersion != v1alpha1.SchemeGroupVersion.String() {
		t.Errorf("list -o json: kind %q apiVersion %q", list.Kind, list.APIVersion)
	}
	endpoints := map[string]string{}
	for _, c := range list.Items {
		if c.Kind != "Cluster" {
			t.Errorf("item %s: kind %q", c.Name, c.Kind)
		}
		endpoints[c.Name] = c.Spec.Endpoint
	}
	for _, m := range f.State.Members {
		if endpoints[m.Name] != m.URL {
			t.Errorf("list -o json: %s has endpoint %q, want %s", m.Name, endpoints[m.Name], m.URL)
		}
		out := mustPlugin(t, "list", "-o", "name")
		if !strings.Contains(out, "cluster.cluster.switchboard.io/"+m.Name+"\n") {
			t.Errorf("list -o name lacks %s:\n%s", m.Name, out)
		}
	}
	out := mustPlugin(t, "list", "-o", "wide")
	if !lineHas(out, "NAME", "ENDPOINT", "READY", "VERSION", "CREDENTIAL", "LATENCY", "REASON") {
		t.Errorf("list -o wide header:\n%s", out)
	}
	if r := plugin(t, "list", "-o", "xml"); r.Err == nil || !strings.Contains(r.Stderr, `--output must be one of wide, json, yaml`) {
		t.Errorf("list -o xml: %v %s", r.Err, r.Stderr)
	}
}

// TestPluginListFailingCredential: list prints the table and fails, naming
// the cluster whose credential does not work.
func TestPluginListFailingCredential(t *testing.T) {
	ctx := context.Background()
	hub := f.Hub(t)
	member1, err := f.State.Member("member1")
	if err != nil {
		t.Fatal(err)
	}
	good, err := hub.CoreV1().Secrets(join.DefaultHubNamespace).Get(ctx, join.SecretName("member1"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const name = "plugin-broken"
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: join.SecretName(name), Namespace: join.DefaultHubNamespace},
		Data: map[string][]byte{
			v1alpha1.SecretKeyToken:    []byte("not-a-valid-token"),
			v1alpha1.SecretKeyCABundle: good.Data[v1alpha1.SecretKeyCABundle],
		},
	}
	if _, err := hub.CoreV1().Secrets(join.DefaultHubNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = hub.CoreV1().Secrets(join.DefaultHubNamespace).Delete(context.Background(), secret.Name, metav1.DeleteOptions{})
	})
	cluster := &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.ClusterSpec{Endpoint: member1.URL, CredentialsSecretRef: v1alpha1.SecretReference{Name: secret.Name}},
	}
	clusters := f.Switchboard(t).ClusterV1alpha1().Clusters()
	if _, err := clusters.Create(ctx, cluster, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = clusters.Delete(context.Background(), name, metav1.DeleteOptions{}) })

	r := plugin(t, "list")
	if r.Err == nil {
		t.Errorf("list exits 0 with a failing credential:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stderr, "the credential check fails for 1 of") || !strings.Contains(r.Stderr, ": "+name+" (see CREDENTIAL)") {
		t.Errorf("stderr does not name %s:\n%s", name, r.Stderr)
	}
	if !lineHas(r.Stdout, name, member1.URL, "fails:") {
		t.Errorf("the table does not show %s failing:\n%s", name, r.Stdout)
	}
	for _, m := range f.State.Members {
		if !lineHas(r.Stdout, m.Name, m.URL, "works") {
			t.Errorf("the table lacks a working %s:\n%s", m.Name, r.Stdout)
		}
	}
}

// TestPluginKubeconfigOfAMissingCluster: no kubeconfig for a Cluster that
// does not exist.
func TestPluginKubeconfigOfAMissingCluster(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nosuch.kubeconfig")
	r := plugin(t, "kubeconfig", "nosuch", "--output-file", path)
	if r.Err == nil || !strings.Contains(r.Stderr, `cluster "nosuch" not found on the hub (kubectl get clusters.cluster.switchboard.io`) {
		t.Errorf("kubeconfig nosuch: err=%v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("kubeconfig nosuch wrote %s (%v)", path, err)
	}
	if r := plugin(t, "kubeconfig", "nosuch"); r.Err == nil || r.Stdout != "" {
		t.Errorf("kubeconfig nosuch to stdout: err=%v stdout %q", r.Err, r.Stdout)
	}
}

// TestPluginInstallImageAndKey: install --dry-run=client renders the image
// of the plugin's own version, and says that it prints a private key.
func TestPluginInstallImageAndKey(t *testing.T) {
	var v apimachineryversion.Info
	if err := yaml.Unmarshal([]byte(mustPlugin(t, "version", "-o", "yaml")), &v); err != nil || v.GitVersion == "" {
		t.Fatalf("version -o yaml: %v %+v", err, v)
	}
	r := plugin(t, "install", "--dry-run=client")
	if r.Err != nil {
		t.Fatalf("%v: %s", r.Err, r.Stderr)
	}
	if want := "image: " + install.ImageRepository + ":" + v.GitVersion + "\n"; !strings.Contains(r.Stdout, want) {
		t.Errorf("install --dry-run=client lacks %q", want)
	}
	if !strings.Contains(r.Stderr, "Warning: the output holds the private key") || !strings.Contains(r.Stdout, install.ServingSecretComment) {
		t.Errorf("install --dry-run=client does not say it prints a private key:\nstderr: %s", r.Stderr)
	}
}

// TestPluginInstallServerDryRun: a kube-apiserver validates every object
// and keeps none. The hub's switchboard-system holds the topology's own
// registration of switchboard (an ExternalName Service), which the
// manifests' Service cannot merge with; member1, a kube-apiserver with
// the same APIs and a switchboard-system namespace but no switchboard in
// it, stands in for a hub to install on.
func TestPluginInstallServerDryRun(t *testing.T) {
	ctx := context.Background()
	target := f.Member(t, "member1")
	r := framework.KubectlArgs(t, nil, "switchboard", "install", "--dry-run=server", "--kubeconfig", f.MemberAdminKubeconfig(t, "member1"))
	if r.Err != nil {
		t.Fatalf("install --dry-run=server: %v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^namespace/switchboard-system (configured|unchanged) \(server dry run\)$`),
		regexp.MustCompile(`(?m)^service/switchboard-apiserver created \(server dry run\)$`),
		regexp.MustCompile(`(?m)^deployment\.apps/switchboard-apiserver created \(server dry run\)$`),
		regexp.MustCompile(`(?m)^secret/switchboard-apiserver-serving created \(server dry run\)$`),
		regexp.MustCompile(`(?m)^clusterrole\.rbac\.authorization\.k8s\.io/switchboard:proxy-admin created \(server dry run\)$`),
		regexp.MustCompile(`(?m)^apiservice\.apiregistration\.k8s\.io/v1alpha1\.cluster\.switchboard\.io created \(server dry run\)$`),
		regexp.MustCompile(`(?m)^Server dry run: the hub accepted the objects above and changed nothing\.$`),
	} {
		if !want.MatchString(r.Stdout) {
			t.Errorf("install --dry-run=server lacks %s:\n%s", want, r.Stdout)
		}
	}
	if _, err := target.AppsV1().Deployments(install.Namespace).Get(ctx, install.ServiceName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after a server dry run, the Deployment: %v", err)
	}
	if _, err := target.CoreV1().Secrets(install.Namespace).Get(ctx, install.ServingSecretName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after a server dry run, the serving Secret: %v", err)
	}
	if _, err := target.RbacV1().ClusterRoles().Get(ctx, "switchboard:proxy-admin", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after a server dry run, the ClusterRole switchboard:proxy-admin: %v", err)
	}
	err := target.Discovery().RESTClient().Get().AbsPath("/apis/apiregistration.k8s.io/v1/apiservices/v1alpha1.cluster.switchboard.io").Do(ctx).Error()
	if !apierrors.IsNotFound(err) {
		t.Errorf("after a server dry run, the APIService: %v", err)
	}
}
