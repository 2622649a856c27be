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
	"time"

	"github.com/switchboard-io/switchboard/test/e2e/framework"
)

// clusterAPICRD is a resource named like switchboard's, as Cluster API's
// clusters.cluster.x-k8s.io is on many hubs.
const clusterAPICRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: clusters.cluster.x-k8s.io
spec:
  group: cluster.x-k8s.io
  scope: Namespaced
  names: {plural: clusters, singular: cluster, kind: Cluster, listKind: ClusterList, shortNames: [cl]}
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    additionalPrinterColumns:
    - {name: PHASE, type: string, jsonPath: .status.phase}
---
apiVersion: cluster.x-k8s.io/v1beta1
kind: Cluster
metadata:
  name: capi-workload
  namespace: default
`

// TestShortNamesOnASharedHub: with Cluster API's clusters also served by the
// hub, switchboard's short names and category still name switchboard's
// Clusters, in kubectl get, wait and api-resources.
func TestShortNamesOnASharedHub(t *testing.T) {
	hub := f.State.Hub.Kubeconfig
	manifest := filepath.Join(t.TempDir(), "capi.yaml")
	if err := os.WriteFile(manifest, []byte(clusterAPICRD), 0o600); err != nil {
		t.Fatal(err)
	}
	crd := strings.SplitN(clusterAPICRD, "---\n", 2)[0]
	crdFile := filepath.Join(t.TempDir(), "crd.yaml")
	if err := os.WriteFile(crdFile, []byte(crd), 0o600); err != nil {
		t.Fatal(err)
	}
	framework.MustKubectl(t, hub, "apply", "-f", crdFile)
	t.Cleanup(func() {
		framework.Kubectl(t, hub, "delete", "crd", "clusters.cluster.x-k8s.io", "--wait=true", "--timeout=60s")
	})
	framework.MustKubectl(t, hub, "wait", "--for=condition=Established", "crd/clusters.cluster.x-k8s.io", "--timeout=60s")
	eventually(t, 30*time.Second, func() error {
		if r := framework.Kubectl(t, hub, "apply", "-f", manifest); r.Err != nil {
			return &kubectlError{r}
		}
		return nil
	})

	out := framework.MustKubectl(t, hub, "api-resources", "--api-group=cluster.switchboard.io", "-o", "wide")
	if !lineHas(out, "clusters", "sbc,sbcluster", "cluster.switchboard.io/v1alpha1", "false", "Cluster", "switchboard") {
		t.Errorf("kubectl api-resources shows no short names or category for switchboard's clusters:\n%s", out)
	}

	for _, args := range [][]string{
		{"get", "sbc"},
		{"get", "sbcluster"},
		{"get", "clusters.cluster.switchboard.io"},
		{"get", "switchboard"},
	} {
		out := framework.MustKubectl(t, hub, args...)
		if !lineHas(out, "member1", "https://", "True") || !strings.Contains(out, "ENDPOINT") || strings.Contains(out, "capi-workload") {
			t.Errorf("kubectl %s does not list switchboard's Clusters:\n%s", strings.Join(args, " "), out)
		}
	}
	out = framework.MustKubectl(t, hub, "explain", "sbc.spec")
	if !strings.Contains(out, "GROUP:      cluster.switchboard.io") || !strings.Contains(out, "credentialsSecretRef") {
		t.Errorf("kubectl explain sbc.spec:\n%s", out)
	}
	out = framework.MustKubectl(t, hub, "wait", "--for=condition=Ready", "sbc/member1", "--timeout=60s")
	if !strings.Contains(out, "cluster.cluster.switchboard.io/member1 condition met") {
		t.Errorf("kubectl wait sbc/member1: %s", out)
	}
	// The plain plural is kubectl's pick among several groups; on this hub
	// it is ambiguous, which is why the README uses the short name.
	t.Logf("kubectl get clusters -A with Cluster API present:\n%s", framework.Kubectl(t, hub, "get", "clusters", "-A").Stdout)
}

// TestUserRolesOfTheReadme: the ClusterRoles the README names come with
// the install manifests, local-up installs them, and the README's binding
// lets a team reach member1 and nothing else.
func TestUserRolesOfTheReadme(t *testing.T) {
	hub := f.State.Hub.Kubeconfig
	for _, role := range []string{"switchboard:proxy-admin", "switchboard:proxy-member1", "switchboard:cluster-admin"} {
		framework.MustKubectl(t, hub, "get", "clusterrole", role)
	}
	user := f.CertificateUser(t, "readme-reader", "team-readme")
	framework.MustKubectl(t, hub, "create", "clusterrolebinding", "team-readme-member1",
		"--clusterrole=switchboard:proxy-member1", "--group=team-readme")
	t.Cleanup(func() { framework.Kubectl(t, hub, "delete", "clusterrolebinding", "team-readme-member1") })

	eventually(t, 30*time.Second, func() error {
		if r := framework.Kubectl(t, user.Kubeconfig, "get", "--raw", proxyPrefix+"member1/proxy/version"); r.Err != nil {
			return &kubectlError{r}
		}
		return nil
	})
	r := framework.Kubectl(t, user.Kubeconfig, "get", "--raw", proxyPrefix+"member2/proxy/version")
	if r.Err == nil || !strings.Contains(r.Stderr, "forbidden") {
		t.Errorf("member2 with switchboard:proxy-member1: err=%v stderr=%s", r.Err, r.Stderr)
	}
	out := framework.MustKubectl(t, user.Kubeconfig, "get", "sbc", "member1")
	if !lineHas(out, "member1", "True") {
		t.Errorf("kubectl get sbc member1 with switchboard:proxy-member1:\n%s", out)
	}
}

// TestReadmeExamplesCollideWithNothing: the example Cluster and Secret the
// README creates are new objects next to a running topology, and kubectl
// create (which the README uses) would refuse to replace a Cluster.
func TestReadmeExamplesCollideWithNothing(t *testing.T) {
	hub := f.State.Hub.Kubeconfig
	examples := filepath.Join(framework.RepoRoot(), "artifacts", "examples")
	out := framework.MustKubectl(t, hub, "create", "--dry-run=server", "-f", filepath.Join(examples, "example-credentials.yaml"), "-f", filepath.Join(examples, "example-cluster.yaml"))
	for _, want := range []string{"secret/example-credentials created (server dry run)", "cluster.cluster.switchboard.io/example created (server dry run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl create --dry-run=server of the examples lacks %q:\n%s", want, out)
		}
	}
	for _, m := range f.State.Members {
		if m.Name == "example" {
			t.Errorf("the topology has a member named like the example")
		}
	}
}
