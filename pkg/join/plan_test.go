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
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// planned is one document of WriteYAML's output.
type planned struct {
	where string
	obj   map[string]any
}

func (p planned) kind() string { return p.obj["apiVersion"].(string) + " " + p.obj["kind"].(string) }

func (p planned) field(path ...string) any {
	var v any = p.obj
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// writePlan renders objects with WriteYAML and reads the documents back.
func writePlan(t *testing.T, objects []PlannedObject) (string, []planned) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteYAML(&buf, objects); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	var docs []planned
	for _, doc := range strings.Split(out, "---\n") {
		header, body, ok := strings.Cut(doc, "\n")
		where, found := strings.CutPrefix(header, "# in the ")
		if !ok || !found || !strings.HasSuffix(where, " cluster") {
			t.Fatalf("document without a header:\n%s", doc)
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(body), &obj); err != nil {
			t.Fatalf("%v in:\n%s", err, body)
		}
		docs = append(docs, planned{strings.TrimSuffix(where, " cluster"), obj})
	}
	return out, docs
}

func TestPlanYAML(t *testing.T) {
	out, docs := writePlan(t, Plan(testName, "https://member.internal:443", "", true, nil, nil))

	want := []string{
		"member admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy " + GuardName,
		"member admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding " + GuardName,
		"member v1 Namespace switchboard-system",
		"member v1 ServiceAccount switchboard-impersonator",
		"member rbac.authorization.k8s.io/v1 ClusterRole switchboard:impersonator",
		"member rbac.authorization.k8s.io/v1 ClusterRoleBinding switchboard:impersonator",
		"member v1 Secret " + TokenSecretPrefix + "*",
		"hub v1 Secret prod-credentials",
		"hub cluster.switchboard.io/v1alpha1 Cluster prod",
	}
	var got []string
	for _, d := range docs {
		name, _ := d.field("metadata", "name").(string)
		if name == "" {
			name = d.field("metadata", "generateName").(string) + "*"
		}
		got = append(got, d.where+" "+d.kind()+" "+name)
		if d.field("metadata", "labels", ManagedByLabel) != ManagedByValue {
			t.Errorf("%s %s without the managed-by label", d.kind(), name)
		}
		if d.field("data") != nil {
			t.Errorf("%s %s has data: %v", d.kind(), name, d.field("data"))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("planned objects:\n  got:  %q\n  want: %q", got, want)
	}
	if n := strings.Count(out, "# in the member cluster\n"); n != 7 {
		t.Errorf("%d member headers, want 7", n)
	}
	if n := strings.Count(out, "# in the hub cluster\n"); n != 2 {
		t.Errorf("%d hub headers, want 2", n)
	}

	token := docs[6]
	if token.field("type") != "kubernetes.io/service-account-token" ||
		token.field("metadata", "annotations", "kubernetes.io/service-account.name") != ServiceAccountName ||
		token.field("metadata", "namespace") != Namespace {
		t.Errorf("token Secret: %v", token.obj)
	}
	hubSecret := docs[7]
	if hubSecret.field("metadata", "namespace") != DefaultHubNamespace || hubSecret.field("type") != "Opaque" {
		t.Errorf("hub Secret: %v", hubSecret.obj)
	}
	for _, key := range []string{"token", "ca.crt"} {
		v, _ := hubSecret.field("stringData", key).(string)
		if !strings.HasPrefix(v, "<filled in by join>") {
			t.Errorf("hub Secret %s = %q, want a placeholder", key, v)
		}
	}
	cluster := docs[8]
	if cluster.field("spec", "endpoint") != "https://member.internal:443" ||
		cluster.field("spec", "credentialsSecretRef", "name") != "prod-credentials" ||
		cluster.field("spec", "insecureSkipTLSVerify") != true {
		t.Errorf("Cluster spec: %v", cluster.field("spec"))
	}
	rules, _ := docs[4].field("rules").([]any)
	if len(rules) != len(wantRules) {
		t.Errorf("ClusterRole rules %v", docs[4].field("rules"))
	}
}
