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

package identity

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
)

var path = field.NewPath("spec", "identity")

func mustCompile(t *testing.T, p *Policy) *Program {
	t.Helper()
	prog, errs := Compile(p, path)
	if len(errs) > 0 {
		t.Fatalf("Compile: %v", errs.ToAggregate())
	}
	return prog
}

var bob = &user.DefaultInfo{
	Name:   "bob",
	UID:    "uid-bob",
	Groups: []string{"dev", "system:masters", "system:authenticated"},
	Extra:  map[string][]string{"example.com/scopes": {"read", "write"}},
}

func TestCompileErrorsAreFieldErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy Policy
		want   []string
	}{
		{"syntax", Policy{Username: "'hub:' +"}, []string{`spec.identity.username: Invalid value: "'hub:' +": does not compile: `}},
		{"unknown field", Policy{Username: "user.name"}, []string{"spec.identity.username: Invalid value", "does not compile", "undefined field 'name'"}},
		{"wrong type", Policy{Groups: "user.username"}, []string{"spec.identity.groups: Invalid value", "gives string, must give [list(string)]"}},
		{"rule not bool", Policy{Rules: []Rule{{Expression: "user.groups"}}}, []string{"spec.identity.rules[0].expression: Invalid value", "gives list(string), must give [bool]"}},
		{"empty rule", Policy{Rules: []Rule{{}}}, []string{"spec.identity.rules[0].expression: Required value"}},
		{"extra without key, twice", Policy{Extra: []Extra{{ValueExpression: "'a'"}, {Key: "k", ValueExpression: "1"}, {Key: "k", ValueExpression: "'b'"}}},
			[]string{"spec.identity.extra[0].key: Required value", "spec.identity.extra[1].valueExpression: Invalid value", "spec.identity.extra[2].key: Duplicate value"}},
		{"extra key not lowercase", Policy{Extra: []Extra{{Key: "Example.com/x", ValueExpression: "'a'"}}}, []string{`spec.identity.extra[0].key: Invalid value: "Example.com/x": must be lowercase`}},
		{"too many rules", Policy{Rules: make([]Rule, 17)}, []string{"spec.identity.rules: Too many: 17: must have at most 16 items"}},
		{"too expensive", Policy{Rules: []Rule{{Expression: "user.groups.all(a, user.groups.all(b, a != b || a == b))"}}},
			[]string{"spec.identity.rules[0].expression: Forbidden: may cost up to", "more than the limit of 1000000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog, errs := Compile(&tc.policy, path)
			if prog != nil || len(errs) == 0 {
				t.Fatalf("Compile = %v, %v; want errors", prog, errs)
			}
			got := errs.ToAggregate().Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("errors %q lack %q", got, w)
				}
			}
		})
	}
}

func TestMap(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		policy *Policy
		want   *user.DefaultInfo
	}{
		{"no policy", nil, bob},
		{"prefix everything", &Policy{
			Username: "'hub:' + user.username",
			UID:      "'hub:' + user.uid",
			Groups:   "user.groups.filter(g, g != 'system:authenticated').map(g, 'hub:' + g)",
			Extra:    []Extra{{Key: "hub.example.com/user", ValueExpression: "user.username"}, {Key: "dropped", ValueExpression: "[]"}},
		}, &user.DefaultInfo{
			Name: "hub:bob", UID: "hub:uid-bob", Groups: []string{"hub:dev", "hub:system:masters"},
			Extra: map[string][]string{"hub.example.com/user": {"bob"}},
		}},
		{"Kubernetes' types as their text", &Policy{Groups: "[dyn('dev'), dyn(ip('10.0.0.1'))]"},
			&user.DefaultInfo{Name: "bob", UID: "uid-bob", Groups: []string{"dev", "10.0.0.1"}, Extra: bob.Extra}},
		{"only some groups pass", &Policy{Groups: "user.groups.filter(g, g in ['dev', 'ops'])"},
			&user.DefaultInfo{Name: "bob", UID: "uid-bob", Groups: []string{"dev"}, Extra: bob.Extra}},
		{"extras from extras", &Policy{Extra: []Extra{{Key: "scopes", ValueExpression: "'example.com/scopes' in user.extra ? user.extra['example.com/scopes'] : []"}}},
			&user.DefaultInfo{Name: "bob", UID: "uid-bob", Groups: bob.Groups, Extra: map[string][]string{"scopes": {"read", "write"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mustCompile(t, tc.policy).Map(ctx, bob)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if !reflect.DeepEqual(got.GetName(), want.Name) || got.GetUID() != want.UID ||
				!reflect.DeepEqual(got.GetGroups(), want.Groups) || !reflect.DeepEqual(got.GetExtra(), want.Extra) {
				t.Errorf("Map = %+v, want %+v", got, want)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	noMasters := &Policy{Rules: []Rule{
		{Expression: "user.username != ''"},
		{Expression: "!('system:masters' in user.groups)", Message: "hub administrators are not administrators here"},
	}}
	prog := mustCompile(t, noMasters)
	_, err := prog.Map(ctx, bob)
	var r *Refusal
	if !errors.As(err, &r) || r.Rule != 1 || !strings.Contains(err.Error(), "rule 1 (!('system:masters' in user.groups)): hub administrators are not administrators here") {
		t.Errorf("Map(bob) = %v, want rule 1's refusal", err)
	}
	alice := &user.DefaultInfo{Name: "alice", Groups: []string{"dev"}}
	if got, err := prog.Map(ctx, alice); err != nil || got.GetName() != "alice" {
		t.Errorf("Map(alice) = %v, %v; want alice unchanged", got, err)
	}

	// A mapping that fails refuses too: never the caller unmapped.
	for _, p := range []*Policy{
		{Username: "user.extra['missing'][0]"},
		{Username: "''"},
		{Groups: "dyn(user.uid)"},
		{Groups: "dyn(1)"},
		{Groups: "[dyn('dev'), dyn(1)]"},
		{Extra: []Extra{{Key: "k", ValueExpression: "dyn({'a': 'b'})"}}},
	} {
		got, err := mustCompile(t, p).Map(ctx, alice)
		if !IsRefusal(err) || got != nil {
			t.Errorf("%+v: Map = %v, %v; want a refusal", p, got, err)
		}
	}
}

// Names with ':', ',', quotes and Unicode are data: no caller-chosen
// string changes what an expression does.
func TestCallerStringsStayData(t *testing.T) {
	ctx := context.Background()
	prog := mustCompile(t, &Policy{
		Rules:    []Rule{{Expression: "!('system:masters' in user.groups)"}},
		Username: "'hub:' + user.username",
		Groups:   "user.groups.map(g, 'hub:' + g)",
	})
	for _, name := range []string{`a'+'system:masters`, `x", "system:masters`, "système:maîtres", "a,b", `\' || true || '`, "hub:hub:x"} {
		caller := &user.DefaultInfo{Name: name, Groups: []string{name, "system:masters,dev"}}
		got, err := prog.Map(ctx, caller)
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		if got.GetName() != "hub:"+name || !reflect.DeepEqual(got.GetGroups(), []string{"hub:" + name, "hub:system:masters,dev"}) {
			t.Errorf("%q mapped to %q %q", name, got.GetName(), got.GetGroups())
		}
	}
}

// The runtime cost limit stops an expression that the estimate let
// through, for a caller far beyond the estimate's bounds.
func TestRuntimeCostLimit(t *testing.T) {
	prog := mustCompile(t, &Policy{Rules: []Rule{{Expression: "user.groups.all(g, !g.contains('x'))"}}})
	groups := make([]string, 2000)
	for i := range groups {
		groups[i] = strings.Repeat("g", 10000)
	}
	_, err := prog.Map(context.Background(), &user.DefaultInfo{Name: "many", Groups: groups})
	if !IsRefusal(err) || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("Map = %v, want a refusal for the cost limit", err)
	}
	// Within the bounds the estimate assumed, it runs.
	within := make([]string, maxGroups)
	for i := range within {
		within[i] = strings.Repeat("g", maxStringLength)
	}
	if _, err := prog.Map(context.Background(), &user.DefaultInfo{Name: "within", Groups: within}); err != nil {
		t.Errorf("Map with %d groups of %d characters: %v", maxGroups, maxStringLength, err)
	}
}

func TestPresets(t *testing.T) {
	ctx := context.Background()
	tricky := `a"b\c'd` + "é:,"
	for _, tc := range []struct {
		name   string
		preset Preset
		caller *user.DefaultInfo
		want   *user.DefaultInfo
		refuse bool
	}{
		{"nothing", Preset{}, bob, bob, false},
		{"refuse hub admins", Preset{RefuseHubAdmins: true}, bob, nil, true},
		{"refuse hub admins, not others", Preset{RefuseHubAdmins: true}, &user.DefaultInfo{Name: "carol", Groups: []string{"dev"}},
			&user.DefaultInfo{Name: "carol", Groups: []string{"dev"}}, false},
		{"prefix", Preset{Prefix: "hub:"}, bob,
			&user.DefaultInfo{Name: "hub:bob", UID: "uid-bob", Groups: []string{"hub:dev", "hub:system:masters", "hub:system:authenticated"}, Extra: bob.Extra}, false},
		{"only some groups, prefixed", Preset{Prefix: tricky, AllowGroups: []string{"dev", tricky}},
			&user.DefaultInfo{Name: "bob", Groups: []string{"dev", "ops", tricky}},
			&user.DefaultInfo{Name: tricky + "bob", Groups: []string{tricky + "dev", tricky + tricky}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy, err := tc.preset.Policy()
			if err != nil {
				t.Fatal(err)
			}
			got, err := mustCompile(t, policy).Map(ctx, tc.caller)
			if tc.refuse {
				if !IsRefusal(err) {
					t.Fatalf("Map = %v, %v; want a refusal", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.GetName() != tc.want.Name || got.GetUID() != tc.want.UID || !reflect.DeepEqual(got.GetGroups(), tc.want.Groups) {
				t.Errorf("Map = %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, bad := range []Preset{{Prefix: " hub:"}, {AllowGroups: []string{"dev", ""}}, {Prefix: "a\nb"}} {
		if _, err := bad.Policy(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
