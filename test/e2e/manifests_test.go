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
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-io/switchboard/test/e2e/framework"
)

// TestInstallManifests renders both install variants, as kubectl kustomize
// and as kubectl switchboard install --dry-run (with a serving pair and the
// caBundle), and has the real hub validate every object (server dry run).
func TestInstallManifests(t *testing.T) {
	for _, variant := range []string{"single", "ha", "install --dry-run single", "install --dry-run ha"} {
		t.Run(variant, func(t *testing.T) {
			var rendered string
			if name, ok := strings.CutPrefix(variant, "install --dry-run "); ok {
				rendered = mustPlugin(t, "install", "--dry-run=client", "--variant", name)
				if !strings.Contains(rendered, "caBundle: ") || !strings.Contains(rendered, "name: switchboard-apiserver-serving") {
					t.Errorf("install --dry-run has no caBundle or serving Secret")
				}
			} else {
				dir := filepath.Join(framework.RepoRoot(), "artifacts", "deploy", variant)
				rendered = framework.MustKubectl(t, f.State.Hub.Kubeconfig, "kustomize", dir)
			}
			for _, kind := range []string{"kind: Namespace", "kind: Deployment", "kind: Service", "kind: APIService", "kind: PodDisruptionBudget", "kind: ClusterRoleBinding", "kind: RoleBinding"} {
				if !strings.Contains(rendered, kind) {
					t.Errorf("%s renders no %s", variant, kind)
				}
			}
			if strings.Contains(rendered, "insecureSkipTLSVerify") {
				t.Errorf("%s sets insecureSkipTLSVerify", variant)
			}
			// The topology registered switchboard in switchboard-system its
			// own way (an ExternalName Service); validate the manifests in
			// a namespace of their own, so no merge with it is involved.
			ns := framework.CreateNamespace(t, f.Hub(t), "install")
			manifests := strings.ReplaceAll(rendered, "namespace: switchboard-system", "namespace: "+ns)
			manifests = strings.ReplaceAll(manifests, "name: switchboard-system\n", "name: "+ns+"\n")
			path := filepath.Join(t.TempDir(), "install.yaml")
			if err := os.WriteFile(path, []byte(manifests), 0o600); err != nil {
				t.Fatal(err)
			}
			out := framework.MustKubectl(t, f.State.Hub.Kubeconfig, "apply", "--dry-run=server", "-f", path)
			for _, want := range []string{"deployment.apps/switchboard-apiserver", "apiservice.apiregistration.k8s.io/v1alpha1.cluster.switchboard.io", "clusterrole.rbac.authorization.k8s.io/switchboard:proxy-admin"} {
				if !strings.Contains(out, want) || !strings.Contains(out, "(server dry run)") {
					t.Errorf("%s dry run lacks %q:\n%s", variant, want, out)
				}
			}
		})
	}
}

// TestCertManagerExample renders the cert-manager example (its CRDs are not
// on the local hub, so it is not applied).
func TestCertManagerExample(t *testing.T) {
	dir := filepath.Join(framework.RepoRoot(), "artifacts", "deploy", "cert-manager")
	rendered := framework.MustKubectl(t, f.State.Hub.Kubeconfig, "kustomize", dir)
	for _, want := range []string{"cert-manager.io/inject-ca-from: switchboard-system/switchboard-apiserver-serving", "kind: Certificate", "secretName: switchboard-apiserver-serving", "switchboard-apiserver.switchboard-system.svc"} {
		if !strings.Contains(rendered, want) {
			t.Errorf("the cert-manager example lacks %q", want)
		}
	}
}
