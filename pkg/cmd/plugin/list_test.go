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
	"cmp"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

func TestListOptions(t *testing.T) {
	noFormat := func(format string) []string {
		return []string{"--output must be one of wide, json, yaml, ", ", not \"" + format + "\""}
	}
	for _, tc := range []struct {
		args []string
		// table and wide are what Complete decides.
		table, wide  bool
		probeTimeout time.Duration
		// wantErr are parts of the error Validate must report.
		wantErr []string
	}{
		{args: nil, table: true, probeTimeout: 10 * time.Second},
		{args: []string{"-o", "wide", "--probe-timeout", "3s"}, table: true, wide: true, probeTimeout: 3 * time.Second},
		{args: []string{"-o", "json"}, probeTimeout: 10 * time.Second},
		{args: []string{"-o", "yaml"}, probeTimeout: 10 * time.Second},
		{args: []string{"-o", "name"}, probeTimeout: 10 * time.Second},
		{args: []string{"-o", "jsonpath={.items[*].metadata.name}"}, probeTimeout: 10 * time.Second},
		// --template alone is a go-template, as in kubectl get.
		{args: []string{"--template", "{{len .items}}"}, probeTimeout: 10 * time.Second},
		{args: []string{"-o", "xml"}, probeTimeout: 10 * time.Second, wantErr: noFormat("xml")},
		{args: []string{"-o", "Wide"}, probeTimeout: 10 * time.Second, wantErr: noFormat("Wide")},
		{args: []string{"-o", "jsonpath={.items["}, probeTimeout: 10 * time.Second, wantErr: []string{"error parsing jsonpath {.items[, unterminated array"}},
		{args: []string{"-o", "go-template={{.items"}, probeTimeout: 10 * time.Second, wantErr: []string{"error parsing template {{.items, "}},
	} {
		t.Run(cmp.Or(strings.Join(tc.args, " "), "no flags"), func(t *testing.T) {
			// No hub: neither Complete nor Validate reads one.
			hub := testHubFlags(t, filepath.Join(t.TempDir(), "nonexistent"))
			o := NewListOptions(testStreams())
			cmd := newListCommand(hub, o)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := o.Complete(hub, cmd, nil); err != nil {
				t.Fatal(err)
			}
			if o.table != tc.table || o.wide != tc.wide || o.ProbeTimeout != tc.probeTimeout {
				t.Errorf("table %v, wide %v, probe timeout %s; want %v, %v, %s", o.table, o.wide, o.ProbeTimeout, tc.table, tc.wide, tc.probeTimeout)
			}
			err := o.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v", err)
				}
				return
			}
			for _, want := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %v, want it to hold %q", err, want)
				}
			}
		})
	}
}
