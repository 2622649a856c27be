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

// TestInstallManifests renders both install variants and has the real hub
// validate every object of them (server-side dry run).
func TestInstallManifests(t *testing.T) {
	for _, variant := range []string{"single", "ha"} {
		t.Run(variant, func(t *testing.T) {
			dir := filepath.Join(framework.RepoRoot(), "artifacts", "deploy", variant)
			rendered := framework.MustKubectl(t, f.State.Hub.Kubeconfig, "kustomize", dir)
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
			ns := framework.CreateNamespace(t, f.Hub(t), "install-"+variant)
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
