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

package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/install"
	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
)

func testStrategy() Strategy {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return NewStrategy(scheme)
}

func sampleCluster() *cluster.Cluster {
	now := metav1.Now()
	return &cluster.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "member1", ResourceVersion: "7", Generation: 3, Labels: map[string]string{"env": "prod"}},
		Spec: cluster.ClusterSpec{
			Connection:           cluster.ConnectionDirect,
			Endpoint:             "https://10.0.0.12:6443",
			CredentialsSecretRef: cluster.SecretReference{Name: "member1-credentials"},
		},
		Status: cluster.ClusterStatus{
			Conditions:        []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Probed", LastTransitionTime: now}},
			KubernetesVersion: "v1.37.2",
			LastProbeTime:     &now,
			ProbeLatency:      &metav1.Duration{Duration: 2500 * time.Microsecond},
		},
	}
}

func TestStrategyScopeAndPolicies(t *testing.T) {
	s := testStrategy()
	ctx := context.Background()
	if s.NamespaceScoped() {
		t.Error("Cluster must be cluster-scoped")
	}
	if s.AllowCreateOnUpdate(ctx) {
		t.Error("PUT must not create a Cluster")
	}
	if !s.AllowUnconditionalUpdate(ctx) {
		t.Error("PUT without resourceVersion (kubectl replace) must be allowed")
	}
}

func TestPrepareForCreate(t *testing.T) {
	c := sampleCluster()
	testStrategy().PrepareForCreate(context.Background(), c)
	if len(c.Status.Conditions) != 0 || c.Status.KubernetesVersion != "" || c.Status.LastProbeTime != nil {
		t.Errorf("status not cleared on create: %+v", c.Status)
	}
	if c.Generation != 1 {
		t.Errorf("generation = %d, want 1", c.Generation)
	}
}

func TestPrepareForUpdate(t *testing.T) {
	cases := []struct {
		name           string
		mutate         func(*cluster.Cluster)
		wantGeneration int64
	}{
		{name: "metadata only", mutate: func(c *cluster.Cluster) { c.Labels = map[string]string{"env": "dev"} }, wantGeneration: 3},
		{name: "status only is dropped", mutate: func(c *cluster.Cluster) { c.Status.KubernetesVersion = "v0.0.0" }, wantGeneration: 3},
		{name: "spec change", mutate: func(c *cluster.Cluster) { c.Spec.ProxyURL = "http://proxy:3128" }, wantGeneration: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := sampleCluster()
			updated := sampleCluster()
			tc.mutate(updated)
			testStrategy().PrepareForUpdate(context.Background(), updated, old)
			if updated.Status.KubernetesVersion != old.Status.KubernetesVersion {
				t.Errorf("status changed through the main resource: %q", updated.Status.KubernetesVersion)
			}
			if updated.Generation != tc.wantGeneration {
				t.Errorf("generation = %d, want %d", updated.Generation, tc.wantGeneration)
			}
		})
	}
}

func TestStatusPrepareForUpdate(t *testing.T) {
	old := sampleCluster()
	updated := sampleCluster()
	updated.Spec.Endpoint = "https://elsewhere:6443"
	updated.Status.KubernetesVersion = "v1.38.0"
	NewStatusStrategy(testStrategy()).PrepareForUpdate(context.Background(), updated, old)
	if updated.Spec.Endpoint != old.Spec.Endpoint {
		t.Errorf("spec changed through status: %q", updated.Spec.Endpoint)
	}
	if updated.Status.KubernetesVersion != "v1.38.0" {
		t.Errorf("status not taken: %q", updated.Status.KubernetesVersion)
	}
	if updated.Generation != old.Generation {
		t.Errorf("generation changed through status: %d", updated.Generation)
	}
}

func TestValidateThroughStrategies(t *testing.T) {
	ctx := context.Background()
	s := testStrategy()
	bad := sampleCluster()
	bad.Spec.Endpoint = "http://x"
	if errs := s.Validate(ctx, bad); len(errs) != 1 || errs[0].Field != "spec.endpoint" {
		t.Errorf("create validation = %v", errs)
	}
	if errs := s.ValidateUpdate(ctx, bad, sampleCluster()); len(errs) != 1 || errs[0].Field != "spec.endpoint" {
		t.Errorf("update validation = %v", errs)
	}

	// The status strategy validates status, not the (reset) spec.
	st := NewStatusStrategy(s)
	badStatus := sampleCluster()
	badStatus.Status.Conditions[0].Status = "Maybe"
	if errs := st.ValidateUpdate(ctx, badStatus, sampleCluster()); len(errs) != 1 || errs[0].Field != "status.conditions[0].status" {
		t.Errorf("status validation = %v", errs)
	}
	if w := st.WarningsOnUpdate(ctx, badStatus, sampleCluster()); w != nil {
		t.Errorf("status writes should not warn: %v", w)
	}

	insecure := sampleCluster()
	insecure.Spec.InsecureSkipTLSVerify = true
	if w := s.WarningsOnCreate(ctx, insecure); len(w) != 1 {
		t.Errorf("create warnings = %v", w)
	}
	if w := s.WarningsOnUpdate(ctx, insecure, sampleCluster()); len(w) != 1 {
		t.Errorf("update warnings = %v", w)
	}
}

func TestGetResetFields(t *testing.T) {
	v := fieldpath.APIVersion("cluster.switchboard.io/v1alpha1")
	main := testStrategy().GetResetFields()[v]
	status := NewStatusStrategy(testStrategy()).GetResetFields()[v]
	if main == nil || !main.Has(fieldpath.MakePathOrDie("status")) || main.Has(fieldpath.MakePathOrDie("spec")) {
		t.Errorf("main strategy resets %v, want status only", main)
	}
	if status == nil || !status.Has(fieldpath.MakePathOrDie("spec")) || status.Has(fieldpath.MakePathOrDie("status")) {
		t.Errorf("status strategy resets %v, want spec only", status)
	}
}

func TestMatchCluster(t *testing.T) {
	c := sampleCluster()
	cases := []struct {
		label, field string
		want         bool
	}{
		{"env=prod", "metadata.name=member1", true},
		{"env=dev", "", false},
		{"", "metadata.name=member2", false},
	}
	for _, tc := range cases {
		ls, _ := labels.Parse(tc.label)
		fs, _ := fields.ParseSelector(tc.field)
		predicate := MatchCluster(ls, fs)
		got, err := predicate.Matches(c)
		if err != nil || got != tc.want {
			t.Errorf("labels %q fields %q: match = %v (err %v), want %v", tc.label, tc.field, got, err, tc.want)
		}
	}
	if _, _, err := GetAttrs(&cluster.ClusterList{}); err == nil {
		t.Error("GetAttrs of a non-Cluster must fail")
	}
}

func TestTableConvertor(t *testing.T) {
	ready := sampleCluster()
	ready.CreationTimestamp = metav1.NewTime(time.Now().Add(-49 * time.Hour))

	fresh := sampleCluster()
	fresh.Name = "member2"
	fresh.Status = cluster.ClusterStatus{}
	fresh.CreationTimestamp = metav1.NewTime(time.Now().Add(-90 * time.Second))

	tunnelled := sampleCluster()
	tunnelled.Name = "edge1"
	tunnelled.Spec.Connection = cluster.ConnectionTunnel
	tunnelled.CreationTimestamp = ready.CreationTimestamp
	tunnelled.Status.Conditions = []metav1.Condition{
		{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAgentDisconnected},
		{Type: v1alpha1.ConditionAgentConnected, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAgentDisconnected},
	}
	connected := tunnelled.DeepCopy()
	connected.Name = "edge2"
	connected.Status.Conditions = []metav1.Condition{
		{Type: v1alpha1.ConditionAgentConnected, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAgentConnected},
	}
	unobserved := tunnelled.DeepCopy()
	unobserved.Name = "edge3"
	unobserved.Status.Conditions = nil

	list := &cluster.ClusterList{ListMeta: metav1.ListMeta{ResourceVersion: "42", Continue: "next"},
		Items: []cluster.Cluster{*ready, *fresh, *tunnelled, *connected, *unobserved}}
	table, err := TableConvertor{}.ConvertToTable(context.Background(), list, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range table.ColumnDefinitions {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "Name,Endpoint,Ready,Version,Age,Latency,Reason,Connection,Agent" {
		t.Errorf("columns = %s", got)
	}
	want := [][]any{
		{"member1", "https://10.0.0.12:6443", "True", "v1.37.2", "2d1h", "2.5ms", "Probed", "Direct", ""},
		{"member2", "https://10.0.0.12:6443", "Unknown", "<unknown>", "90s", "<unknown>", "", "Direct", ""},
		{"edge1", "https://10.0.0.12:6443", "False", "v1.37.2", "2d1h", "2.5ms", "AgentDisconnected", "Tunnel", "Disconnected"},
		{"edge2", "https://10.0.0.12:6443", "Unknown", "v1.37.2", "2d1h", "2.5ms", "", "Tunnel", "Connected"},
		{"edge3", "https://10.0.0.12:6443", "Unknown", "v1.37.2", "2d1h", "2.5ms", "", "Tunnel", "<unknown>"},
	}
	for i, row := range table.Rows {
		for j, cell := range row.Cells {
			if cell != want[i][j] {
				t.Errorf("row %d column %s = %v, want %v", i, names[j], cell, want[i][j])
			}
		}
		if row.Object.Object == nil {
			t.Errorf("row %d carries no object", i)
		}
	}
	if table.ResourceVersion != "42" || table.Continue != "next" {
		t.Errorf("list metadata lost: rv=%q continue=%q", table.ResourceVersion, table.Continue)
	}

	one, err := TableConvertor{}.ConvertToTable(context.Background(), ready, nil)
	if err != nil || len(one.Rows) != 1 || one.ResourceVersion != "7" {
		t.Errorf("single object: %+v, %v", one, err)
	}
	if _, err := (TableConvertor{}).ConvertToTable(context.Background(), &metav1.Status{}, nil); err == nil {
		t.Error("a non-Cluster must not print")
	}
}
