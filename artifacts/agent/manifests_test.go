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

package agent

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	agentcmd "github.com/switchboard-io/switchboard/pkg/cmd/agent"
	"github.com/switchboard-io/switchboard/pkg/names"
	"github.com/switchboard-io/switchboard/pkg/tunnel"
)

// documents returns the YAML documents of dir/*.yaml, with the Cluster
// name filled in, as raw JSON by kind.
func documents(t *testing.T, dir, cluster string) map[string][][]byte {
	t.Helper()
	files, err := fs.Glob(Files, dir+"/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	out := map[string][][]byte{}
	for _, file := range files {
		data, err := Files.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte(ClusterPlaceholder), []byte(cluster))
		decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var raw runtime.RawExtension
			if err := decoder.Decode(&raw); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			var meta struct{ Kind string }
			if err := utilyaml.Unmarshal(raw.Raw, &meta); err != nil {
				t.Fatal(err)
			}
			out[meta.Kind] = append(out[meta.Kind], raw.Raw)
		}
	}
	return out
}

func one[T any](t *testing.T, docs map[string][][]byte, kind string) *T {
	t.Helper()
	if len(docs[kind]) != 1 {
		t.Fatalf("%d %s objects, want 1", len(docs[kind]), kind)
	}
	obj := new(T)
	if err := utilyaml.UnmarshalStrict(docs[kind][0], obj); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return obj
}

func TestTheAgentDeploymentIsHardenedAndRunsRealFlags(t *testing.T) {
	docs := documents(t, "member", "edge1")
	d := one[appsv1.Deployment](t, docs, "Deployment")
	pod := d.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the agent mounts a member token it never needs")
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("the pod may run as root")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("the container is not hardened: %+v", sc)
	}
	if c.Name != names.Agent || len(c.Command) != 1 || !strings.HasSuffix(c.Command[0], "/"+names.Agent) {
		t.Errorf("container %q runs %v, want %s", c.Name, c.Command, names.Agent)
	}
	// Every argument is a flag the agent has, set as it parses.
	flags := agentcmd.NewOptions().Flags()
	all := flags.FlagSet("all")
	for _, fs := range flags.FlagSets {
		all.AddFlagSet(fs)
	}
	if err := all.Parse(c.Args); err != nil {
		t.Fatalf("the Deployment's args %v do not parse: %v", c.Args, err)
	}
	if got := all.Lookup("cluster").Value.String(); got != "edge1" {
		t.Errorf("--cluster = %q, want the Cluster name", got)
	}
	for _, probe := range []string{c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path} {
		if probe != "/healthz" && probe != "/readyz" {
			t.Errorf("probe path %q is not one the agent serves", probe)
		}
	}
	if len(docs["Secret"]) != 1 || len(docs["ServiceAccount"]) != 1 || len(docs["Namespace"]) != 1 {
		t.Errorf("member manifests: %d Secrets, %d ServiceAccounts, %d Namespaces; want one of each",
			len(docs["Secret"]), len(docs["ServiceAccount"]), len(docs["Namespace"]))
	}
}

// TestTheAgentsHubRoleOpensOneTunnel: the agent's hub identity may create
// clusters/attach for its own Cluster and do nothing else.
func TestTheAgentsHubRoleOpensOneTunnel(t *testing.T) {
	docs := documents(t, "hub", "edge1")
	role := one[rbacv1.ClusterRole](t, docs, "ClusterRole")
	binding := one[rbacv1.ClusterRoleBinding](t, docs, "ClusterRoleBinding")
	if role.Name != names.AgentRole("edge1") || binding.Name != role.Name || binding.RoleRef.Name != role.Name {
		t.Errorf("role %q, binding %q -> %q; want %q", role.Name, binding.Name, binding.RoleRef.Name, names.AgentRole("edge1"))
	}
	want := rbacv1.PolicyRule{APIGroups: []string{"cluster.switchboard.io"}, Resources: []string{"clusters/" + tunnel.Subresource},
		Verbs: []string{"create"}, ResourceNames: []string{"edge1"}}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].APIGroups, want.APIGroups) || !slices.Equal(role.Rules[0].Resources, want.Resources) ||
		!slices.Equal(role.Rules[0].Verbs, want.Verbs) || !slices.Equal(role.Rules[0].ResourceNames, want.ResourceNames) {
		t.Errorf("rules = %+v, want exactly %+v", role.Rules, want)
	}
}

func TestTheMemberKustomizationBuilds(t *testing.T) {
	memFS := filesys.MakeFsInMemory()
	files, _ := fs.Glob(Files, "member/*.yaml")
	for _, file := range files {
		data, _ := Files.ReadFile(file)
		if err := memFS.WriteFile("/"+file, data); err != nil {
			t.Fatal(err)
		}
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(memFS, "/member")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resources.Resources()); n != 4 {
		t.Errorf("kustomize rendered %d objects, want 4", n)
	}
}
