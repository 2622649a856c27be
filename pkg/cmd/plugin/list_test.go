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

package plugin

import (
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

// fields splits a table's output into lines of whitespace-separated fields.
func fields(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestListTable(t *testing.T) {
	hub := newFakeHub(t)
	hub.addCluster("good", metav1.ConditionTrue)
	hub.addCluster("down", metav1.ConditionFalse)
	hub.down["down"] = true

	for _, tc := range []struct {
		args   []string
		header []string
	}{
		{[]string{"list"}, []string{"NAME", "ENDPOINT", "READY", "VERSION", "AGE", "CREDENTIAL"}},
		{[]string{"list", "-o", "wide"}, []string{"NAME", "ENDPOINT", "READY", "VERSION", "AGE", "CREDENTIAL", "LATENCY", "REASON"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := hub.hits("GET " + clustersPath + "/down/proxy/version")
			stdout, stderr, err := hub.run(tc.args...)
			// The table is printed, and the command fails naming the
			// cluster whose check failed.
			if err == nil || !strings.Contains(err.Error(), "fails for 1 of 2 clusters: down") || strings.Contains(err.Error(), "good") {
				t.Errorf("err = %v, want one naming down only", err)
			}
			t.Logf("stdout:\n%sstderr:\n%s", stdout, stderr)
			rows := fields(stdout)
			if len(rows) != 3 || strings.Join(rows[0], " ") != strings.Join(tc.header, " ") {
				t.Fatalf("table:\n%s\nstderr: %s", stdout, stderr)
			}
			credential := len(rows[0]) - 1
			if len(tc.header) > 6 {
				credential = 5
			}
			for _, row := range rows[1:] {
				switch row[0] {
				case "good":
					if row[credential] != "works" {
						t.Errorf("good: %v", row)
					}
				case "down":
					if row[credential] != "fails:" || !strings.Contains(stdout, "cluster down is unreachable") {
						t.Errorf("down: %v", row)
					}
				default:
					t.Errorf("row %v", row)
				}
			}
			// One request per check: no retry of the 503 that carries a
			// Retry-After.
			if n := hub.hits("GET "+clustersPath+"/down/proxy/version") - before; n != 1 {
				t.Errorf("the check of down made %d requests, want 1", n)
			}
		})
	}

	t.Run("all work", func(t *testing.T) {
		hub := newFakeHub(t)
		hub.addCluster("good", metav1.ConditionTrue)
		stdout, stderr, err := hub.run("list")
		if err != nil || len(fields(stdout)) != 2 {
			t.Errorf("err = %v\n%s%s", err, stdout, stderr)
		}
	})

	t.Run("none joined", func(t *testing.T) {
		stdout, stderr, err := newFakeHub(t).run("list")
		if err != nil || stdout != "" || !strings.Contains(stderr, "No clusters are joined.") {
			t.Errorf("err = %v, stdout %q, stderr %q", err, stdout, stderr)
		}
	})
}

func TestListOutput(t *testing.T) {
	hub := newFakeHub(t)
	hub.addCluster("member1", metav1.ConditionTrue)
	hub.addCluster("member2", metav1.ConditionFalse)
	hub.down["member2"] = true

	checkList := func(t *testing.T, list *v1alpha1.ClusterList) {
		t.Helper()
		if list.Kind != "ClusterList" || list.APIVersion != "cluster.switchboard.io/v1alpha1" || len(list.Items) != 2 {
			t.Fatalf("list: %+v", list)
		}
		for i, want := range []string{"member1", "member2"} {
			item := list.Items[i]
			if item.Name != want || item.Kind != "Cluster" || item.APIVersion != "cluster.switchboard.io/v1alpha1" ||
				item.Spec.Endpoint != "https://"+want+".example:6443" || item.Status.KubernetesVersion != "v1.37.2" {
				t.Errorf("item %d: %+v", i, item)
			}
		}
	}

	t.Run("json", func(t *testing.T) {
		stdout, stderr, err := hub.run("list", "-o", "json")
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		list := &v1alpha1.ClusterList{}
		if err := json.Unmarshal([]byte(stdout), list); err != nil {
			t.Fatalf("%v:\n%s", err, stdout)
		}
		checkList(t, list)
	})
	t.Run("yaml", func(t *testing.T) {
		stdout, stderr, err := hub.run("list", "-o", "yaml")
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		list := &v1alpha1.ClusterList{}
		if err := yaml.UnmarshalStrict([]byte(stdout), list); err != nil {
			t.Fatalf("%v:\n%s", err, stdout)
		}
		checkList(t, list)
	})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "name"}, "cluster.cluster.switchboard.io/member1\ncluster.cluster.switchboard.io/member2\n"},
		{[]string{"-o", "jsonpath={.items[*].metadata.name}"}, "member1 member2"},
		{[]string{"-o", "go-template={{range .items}}{{.spec.endpoint}} {{end}}"}, "https://member1.example:6443 https://member2.example:6443 "},
		{[]string{"--template={{len .items}}"}, "2"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, err := hub.run(append([]string{"list"}, tc.args...)...)
			if err != nil || stdout != tc.want {
				t.Errorf("err = %v, stdout %q, want %q; stderr %s", err, stdout, tc.want, stderr)
			}
		})
	}
	// The objects are printed as the hub stores them: no live check, and
	// a failing member does not fail the command.
	if n := hub.hits("GET " + clustersPath + "/member2/proxy"); n != 0 {
		t.Errorf("-o printed after %d live checks", n)
	}

	t.Run("unknown format", func(t *testing.T) {
		_, _, err := hub.run("list", "-o", "xml")
		if err == nil || !strings.Contains(err.Error(), `--output must be one of wide, json, yaml`) || !strings.Contains(err.Error(), `not "xml"`) {
			t.Errorf("err = %v", err)
		}
	})
}
