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

package bench

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/switchboard-io/switchboard/pkg/identity"
)

// The benchmark compares B and P as the same work for the member: Policy
// must compile as a new Cluster's would, give B's caller itself, and
// refuse PolicyRefused, whom the preflight sends to prove P applies it.
func TestPolicyKeepsTheBenchmarksCaller(t *testing.T) {
	policy := identity.FromV1alpha1(&Policy)
	if n := len(policy.Rules); n+btoi(policy.Username != "")+btoi(policy.Groups != "")+btoi(policy.UID != "")+len(policy.Extra) != 3 {
		t.Errorf("the policy has %d rules and %+v: want three expressions in all", n, policy)
	}
	prog, errs := identity.CompileIn(identity.NewExpressions, policy, field.NewPath("spec", "identity"))
	if len(errs) > 0 {
		t.Fatalf("the benchmark's policy does not compile: %v", errs.ToAggregate())
	}
	caller := &user.DefaultInfo{Name: Impersonated.User, Groups: []string{Impersonated.Group, user.AllAuthenticated}}
	got, err := prog.Map(context.Background(), caller)
	if err != nil {
		t.Fatalf("the policy refuses the benchmark's caller: %v", err)
	}
	if got.GetName() != caller.Name || got.GetUID() != "" || !reflect.DeepEqual(got.GetGroups(), caller.Groups) || len(got.GetExtra()) != 0 {
		t.Errorf("the policy maps the benchmark's caller %+v to %+v: want it unchanged", caller, got)
	}

	// It does work: a hub service account is prefixed, and loses its
	// service-account groups.
	sa := &user.DefaultInfo{Name: "system:serviceaccount:ns:sa", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns", user.AllAuthenticated}}
	if got, err := prog.Map(context.Background(), sa); err != nil || got.GetName() != "hub:"+sa.Name || !reflect.DeepEqual(got.GetGroups(), []string{user.AllAuthenticated}) {
		t.Errorf("the policy maps %+v to %+v, %v: want hub:%s in [%s]", sa, got, err, sa.Name, user.AllAuthenticated)
	}

	refused := &user.DefaultInfo{Name: PolicyRefused.User, Groups: []string{Impersonated.Group, PolicyRefused.Group}}
	if _, err := prog.Map(context.Background(), refused); !identity.IsRefusal(err) || !strings.Contains(err.Error(), "refuses the caller") {
		t.Errorf("the policy maps %+v with error %v: want its rule to refuse it", refused, err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPolicyMarkdown(t *testing.T) {
	r := &Report{
		Member: "member1", GetPath: "/api/v1/namespaces/default", Workers: 16,
		Paths:      []*Path{{Key: "A", Name: "direct to member1"}, {Key: "B", Name: "switchboard alone"}, {Key: "C", Name: "through the hub"}},
		DirectPath: "A", SwitchboardPath: "B",
		Protocols: map[string]string{}, Load: map[string]*LoadResult{"A": oneSecondOf(2000), "B": oneSecondOf(1000), "C": oneSecondOf(600), "P": oneSecondOf(980)},
		Serial: map[string]*LoadResult{}, LoadCPU: map[string]CPUSnapshot{
			"B": {"switchboard": 1000 * time.Millisecond, "member1": 900 * time.Millisecond},
			"P": {"switchboard": 1000 * time.Millisecond, "member1": 882 * time.Millisecond},
		},
	}
	without := r.Markdown()
	if strings.Contains(without, "With an identity policy") {
		t.Error("a run without path P shows its table")
	}
	r.Policy = &PolicyReport{Cluster: "member1-policy", Path: "P"}
	with := r.Markdown()
	if !strings.HasPrefix(with, without) {
		t.Error("the policy table changes the tables before it")
	}
	for _, want := range []string{
		"| GET /api/v1/namespaces/default, 16 workers: requests/s | 1000 | 980 | **98%** (≥ 97%) |",
		"| 0.900 · 1.000 | 0.900 · 1.020 | switchboard +0.020 ms per request (102% of B's) |",
		"Cluster member1-policy",
	} {
		if !strings.Contains(with, want) {
			t.Errorf("the policy table lacks %q:\n%s", want, with[len(without):])
		}
	}
}
