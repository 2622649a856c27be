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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	celtypes "github.com/google/cel-go/common/types"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// evalCEL evaluates a guard expression as the member's admission would, on
// a request and the object it carries (nil: CEL's null, as for a delete).
func evalCEL(t *testing.T, expression string, request map[string]any, object map[string]any) (bool, error) {
	t.Helper()
	env, err := cel.NewEnv(
		cel.Variable("request", cel.DynType),
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
	)
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(expression)
	if iss.Err() != nil {
		t.Fatalf("%q does not compile: %v", expression, iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	var obj any = celtypes.NullValue
	if object != nil {
		obj = object
	}
	out, _, err := prg.Eval(map[string]any{"request": request, "object": obj, "oldObject": celtypes.NullValue})
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		t.Fatalf("%q evaluated to %v, not a bool", expression, out)
	}
	return b, nil
}

func guardOf(t *testing.T, objs []object) *admissionregistrationv1.ValidatingAdmissionPolicy {
	t.Helper()
	for _, obj := range objs {
		if obj.kind() == "ValidatingAdmissionPolicy" {
			var policy admissionregistrationv1.ValidatingAdmissionPolicy
			if err := convert(obj.config, &policy); err != nil {
				t.Fatal(err)
			}
			return &policy
		}
	}
	t.Fatal("no ValidatingAdmissionPolicy declared")
	return nil
}

func TestGuardMatchesJoinsObjectsOnly(t *testing.T) {
	d := declaration{name: testName, endpoint: memberHost, guard: &guardDeclaration{joiner: testJoiner}, agent: &agentDeclaration{}}
	policy := guardOf(t, objects(d))
	if n := len(policy.Spec.MatchConditions); n != 1 {
		t.Fatalf("%d match conditions, want 1", n)
	}
	match := policy.Spec.MatchConditions[0].Expression
	// As the API server gives them: without the fields that are empty.
	request := func(resource, namespace, name string) map[string]any {
		r := map[string]any{"resource": map[string]any{"resource": resource}}
		if namespace != "" {
			r["namespace"] = namespace
		}
		if name != "" {
			r["name"] = name
		}
		return r
	}
	for _, tc := range []struct {
		what    string
		request map[string]any
		object  map[string]any
		want    bool
	}{
		{"the impersonator's ClusterRole", request("clusterroles", "", ClusterRoleName), nil, true},
		{"its binding", request("clusterrolebindings", "", ClusterRoleName), nil, true},
		{"another ClusterRole", request("clusterroles", "", "admin"), nil, false},
		{"the Namespace, named in the request", request("namespaces", Namespace, Namespace), nil, true},
		{"the impersonator", request("serviceaccounts", Namespace, ServiceAccountName), nil, true},
		{"a ServiceAccount of that name elsewhere", request("serviceaccounts", "default", ServiceAccountName), nil, false},
		{"a token Secret", request("secrets", Namespace, TokenSecretPrefix+"x7k2p"), nil, true},
		{"a token Secret created with a generated name", request("secrets", Namespace, ""),
			map[string]any{"metadata": map[string]any{"name": TokenSecretPrefix + "x7k2p"}}, true},
		{"the agent's hub credential", request("secrets", Namespace, "switchboard-agent-hub"), nil, true},
		{"the agent's Deployment", request("deployments", Namespace, "switchboard-agent"), nil, true},
		{"another Secret beside them", request("secrets", Namespace, "someone-elses"), nil, false},
		{"a deletecollection as a whole", request("secrets", Namespace, ""), nil, false},
	} {
		got, err := evalCEL(t, match, tc.request, tc.object)
		if err != nil {
			// The policy fails closed: an error would refuse the request.
			t.Errorf("%s: %v", tc.what, err)
		} else if got != tc.want {
			t.Errorf("%s: matched %v, want %v", tc.what, got, tc.want)
		}
	}
	for _, r := range policy.Spec.MatchConstraints.ResourceRules {
		if ops := r.Operations; len(ops) != 3 {
			t.Errorf("rule %v covers %v, want CREATE, UPDATE and DELETE", r.Resources, ops)
		}
	}
	if got := policy.Spec.MatchConstraints.ObjectSelector.MatchLabels; got[ManagedByLabel] != ManagedByValue {
		t.Errorf("object selector %v, want switchboard's label", got)
	}
}

func TestGuardAllowsTheJoinerAndTheControlPlane(t *testing.T) {
	for _, joiner := range []string{testJoiner, `oidc:"quoted" \ and
newline`, `" || true || "`} {
		policy := guardOf(t, objects(declaration{name: testName, guard: &guardDeclaration{joiner: joiner}}))
		validation := policy.Spec.Validations[0]
		if !strings.Contains(validation.Message, GuardName) || !strings.Contains(validation.Message, "join or unjoin") {
			t.Errorf("message %q does not say what to do", validation.Message)
		}
		for user, want := range map[string]bool{
			joiner:                           true,
			"system:kube-controller-manager": true,
			"system:apiserver":               true,
			"system:serviceaccount:kube-system:generic-garbage-collector":   true,
			"system:serviceaccount:kube-systemx:mallory":                    false,
			"system:serviceaccount:" + Namespace + ":" + ServiceAccountName: false,
			"mallory":        false,
			testJoiner + "x": false,
		} {
			if user == testJoiner && joiner != testJoiner {
				continue
			}
			got, err := evalCEL(t, validation.Expression, map[string]any{"userInfo": map[string]any{"username": user}}, nil)
			if err != nil || got != want {
				t.Errorf("joiner %q, user %q: allowed %v (%v), want %v", joiner, user, got, err, want)
			}
		}
	}
}

func TestJoinGuardsTheMembersObjects(t *testing.T) {
	f := newFixture(t)
	res := f.mustJoin()
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %q", res.Warnings)
	}
	ctx := context.Background()
	policy, err := f.member.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, GuardName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertManaged(t, policy)
	if got := policy.Spec.Validations[0].Expression; !strings.Contains(got, `"`+testJoiner+`"`) {
		t.Errorf("the guard lets through %s, want %s", got, testJoiner)
	}
	binding, err := f.member.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, GuardName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if binding.Spec.PolicyName != GuardName || len(binding.Spec.ValidationActions) != 1 || binding.Spec.ValidationActions[0] != admissionregistrationv1.Deny {
		t.Errorf("binding %+v, want one that denies with %s", binding.Spec, GuardName)
	}

	// Another administrator joins: the guard is theirs from then on.
	f.member.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, selfSubjectReview("bob"), nil
	})
	f.clearActions()
	res = f.mustJoin()
	assertChanges(t, res.Changes[:2], "corrected ValidatingAdmissionPolicy "+GuardName, "unchanged ValidatingAdmissionPolicyBinding "+GuardName)
	policy, _ = f.member.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, GuardName, metav1.GetOptions{})
	if got := policy.Spec.Validations[0].Expression; !strings.Contains(got, `"bob"`) || strings.Contains(got, testJoiner) {
		t.Errorf("after bob's join, the guard lets through %s", got)
	}
}

func TestJoinWarnsWhenTheMemberCannotGuard(t *testing.T) {
	f := newFixture(t)
	f.memberDiscovery().Resources = nil
	res := f.mustJoin()
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "serves no admissionregistration.k8s.io/v1 validatingadmissionpolicies (Kubernetes 1.30 or newer does)") {
		t.Errorf("warnings %q", res.Warnings)
	}
	for _, w := range f.memberWrites() {
		if strings.Contains(w, "validatingadmission") {
			t.Errorf("wrote %s to a member without admission policies", w)
		}
	}
	if res.Changes[0].Object != "Namespace switchboard-system" {
		t.Errorf("first change %v", res.Changes[0])
	}
}

func TestJoinStopsWhenTheMemberWillNotSayWhoJoins(t *testing.T) {
	f := newFixture(t)
	refused := apierrors.NewForbidden(authenticationResource("selfsubjectreviews"), "", errors.New("no"))
	f.member.PrependReactor("create", "selfsubjectreviews", failWith(refused))
	_, err := f.join()
	assertErrorContains(t, err, "asking the member who the member kubeconfig is (SelfSubjectReview)")
	assertNoWrites(t, f)
}

func authenticationResource(resource string) schema.GroupResource {
	return authenticationv1.SchemeGroupVersion.WithResource(resource).GroupResource()
}

// selfSubjectReview is the member's answer to who the kubeconfig is.
func selfSubjectReview(user string) *authenticationv1.SelfSubjectReview {
	return &authenticationv1.SelfSubjectReview{Status: authenticationv1.SelfSubjectReviewStatus{
		UserInfo: authenticationv1.UserInfo{Username: user},
	}}
}

// A request the guard refuses is sent again, body and all, until the
// member's API servers have taken up join's change of the guard; any other
// refusal is answered at once.
func TestMemberClientWaitsForTheGuardToSettle(t *testing.T) {
	guardSettle = 5 * time.Second
	t.Cleanup(func() { guardSettle = 15 * time.Second })
	var mu sync.Mutex
	refusals := map[string]int{"switchboard:impersonator": 2, "other": 0}
	var bodies []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		name := path.Base(r.URL.Path)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, string(body))
		w.Header().Set("Content-Type", "application/json")
		status := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden}
		switch {
		case name == "other":
			status.Message = "RBAC says no"
		case refusals[name] > 0:
			refusals[name]--
			status.Message = "clusterroles.rbac.authorization.k8s.io \"x\" is forbidden: " + guardRefusal + " with binding '" + GuardName + "' denied request: only \"bob\""
		default:
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"` + name + `"}}`))
			return
		}
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(status)
	}))
	t.Cleanup(server.Close)
	client, err := MemberClient(&rest.Config{Host: server.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	patch := []byte(`{"metadata":{"labels":{"a":"b"}}}`)
	if _, err := client.RbacV1().ClusterRoles().Patch(ctx, "switchboard:impersonator", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch after two refusals of the guard: %v", err)
	}
	if len(bodies) != 3 || bodies[0] != string(patch) || bodies[2] != string(patch) {
		t.Errorf("bodies sent %q, want the patch three times", bodies)
	}
	bodies = nil
	_, err = client.RbacV1().ClusterRoles().Patch(ctx, "other", types.MergePatchType, patch, metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "RBAC says no") || len(bodies) != 1 {
		t.Errorf("another refusal: %v after %d requests, want it at once", err, len(bodies))
	}

	// A guard that keeps refusing is answered once guardSettle is over.
	guardSettle = time.Second
	refusals["switchboard:impersonator"] = 1000
	_, err = client.RbacV1().ClusterRoles().Patch(ctx, "switchboard:impersonator", types.MergePatchType, patch, metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `only "bob"`) {
		t.Errorf("a lasting refusal: %v", err)
	}
}

// joinAs makes the member say the member kubeconfig is user.
func (f *fixture) joinAs(user string) {
	f.member.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, selfSubjectReview(user), nil
	})
}

func (f *fixture) guardPolicy() *admissionregistrationv1.ValidatingAdmissionPolicy {
	f.t.Helper()
	policy, err := f.member.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(context.Background(), GuardName, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return policy
}

// A server dry run by someone the guard does not let through cannot try
// the writes to what it guards: its takeover of the guard is not stored,
// and the guard as it is would refuse them. They are not sent, and the
// change says why; the joiner's own dry run sends them.
func TestJoinServerDryRunOfAnotherUserLeavesGuardedWritesUnsent(t *testing.T) {
	for _, tc := range []struct {
		user, note string
		sent       bool
	}{
		{user: "bob", note: " (server dry run)" + notSentGuarded},
		{user: testJoiner, note: " (server dry run)", sent: true},
	} {
		t.Run(tc.user, func(t *testing.T) {
			f := joined(t)
			role := f.clusterRole()
			role.Rules = role.Rules[:1]
			replaceIn(t, f.member.Tracker(), rbacv1.SchemeGroupVersion.WithResource("clusterroles"), role)
			f.joinAs(tc.user)
			f.clearActions()
			dryRuns, wet := f.answerDryRuns()
			o := f.options()
			o.DryRun = DryRunServer
			res, err := f.joinWith(o)
			if err != nil {
				t.Fatal(err)
			}
			if len(*wet) > 0 {
				t.Errorf("writes without dryRun=All: %q", *wet)
			}
			got := strings.Join(changeStrings(res.Changes), "\n")
			if want := "corrected ClusterRole switchboard:impersonator" + tc.note; !strings.Contains(got, want+"\n") {
				t.Errorf("changes lack %q:\n%s", want, got)
			}
			if sent := slices.Contains(*dryRuns, "patch clusterroles"); sent != tc.sent {
				t.Errorf("the dry run of the role's correction sent: %v, want %v (dry runs %q)", sent, tc.sent, *dryRuns)
			}
			if tc.user == "bob" && !slices.Contains(*dryRuns, "patch validatingadmissionpolicies") {
				t.Errorf("the takeover of the guard was not tried: %q", *dryRuns)
			}
		})
	}
}

// Unjoin by someone else than the last joiner, of a Cluster whose member
// objects partly stay for another Cluster: the guard stays too, so unjoin
// takes it over first, narrowed to what stays, before deleting the rest.
func TestUnjoinTakesTheGuardOverForWhatStays(t *testing.T) {
	ctx := context.Background()
	f, uo := edgeBesideProd(t)
	f.joinAs("bob")
	f.clearActions()
	changes, err := Unjoin(ctx, uo)
	if err != nil {
		t.Fatal(err)
	}
	got := changeStrings(changes)
	if want := "corrected ValidatingAdmissionPolicy " + GuardName + `: it now guards what stays, and lets "bob" change it`; len(got) == 0 || got[0] != want {
		t.Errorf("first change %q, want %q", got, want)
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{"deleted Deployment switchboard-system/switchboard-agent", "kept the member's switchboard objects"} {
		if !strings.Contains(joined, want) {
			t.Errorf("changes lack %q:\n%s", want, joined)
		}
	}
	policy := f.guardPolicy()
	if v := policy.Spec.Validations[0].Expression; !strings.Contains(v, `"bob"`) || strings.Contains(v, testJoiner) {
		t.Errorf("the guard lets through %s, want bob", v)
	}
	m := policy.Spec.MatchConditions[0].Expression
	if strings.Contains(m, `"deployments"`) || !strings.Contains(m, `"`+ServiceAccountName+`"`) {
		t.Errorf("the guard matches %s, want the impersonator's objects and not the agent's", m)
	}
	if writes := f.memberWrites(); len(writes) == 0 || !strings.HasPrefix(writes[0], "patch validatingadmissionpolicies") {
		t.Errorf("member writes %q, want the guard's takeover first", writes)
	}

	// With nothing left to delete, another unjoin leaves the guard alone.
	f.joinAs("carol")
	if changes, err = Unjoin(ctx, uo); err != nil {
		t.Fatal(err)
	}
	if v := f.guardPolicy().Spec.Validations[0].Expression; !strings.Contains(v, `"bob"`) {
		t.Errorf("a second unjoin took the guard over: %s (%q)", v, changeStrings(changes))
	}
}

// A server dry run of unjoin by someone else than the last joiner: the
// guard's delete is tried, and the deletes it would refuse are not sent.
func TestUnjoinServerDryRunOfAnotherUserLeavesGuardedDeletesUnsent(t *testing.T) {
	f := joined(t)
	f.joinAs("bob")
	f.clearActions()
	dryRuns, wet := f.answerDryRuns()
	uo := f.unjoinOptions(true)
	uo.DryRun = DryRunServer
	changes, err := Unjoin(context.Background(), uo)
	if err != nil {
		t.Fatal(err)
	}
	if len(*wet) > 0 {
		t.Errorf("writes without dryRun=All: %q", *wet)
	}
	want := []string{"delete clusters", "delete secrets", "delete validatingadmissionpolicybindings", "delete validatingadmissionpolicies"}
	if !slices.Equal(*dryRuns, want) {
		t.Errorf("dry-run deletes %q, want %q", *dryRuns, want)
	}
	assertChanges(t, changes,
		"deleted Cluster prod (server dry run)",
		"deleted Secret switchboard-system/prod-credentials on the hub (server dry run)",
		"deleted ValidatingAdmissionPolicyBinding "+GuardName+" (server dry run)",
		"deleted ValidatingAdmissionPolicy "+GuardName+" (server dry run)",
		"deleted ClusterRoleBinding switchboard:impersonator (server dry run)"+notSentGuarded,
		"deleted ClusterRole switchboard:impersonator (server dry run)"+notSentGuarded,
		"deleted Secret switchboard-system/"+f.tokenSecret().Name+" (server dry run)"+notSentGuarded,
		"deleted ServiceAccount switchboard-system/switchboard-impersonator (server dry run)"+notSentGuarded,
		"deleted Namespace switchboard-system (server dry run)"+notSentGuarded)
}

// edgeBesideProd is a member joined as Cluster prod, directly, and then as
// Cluster edge, through its agent, and the options that unjoin edge: the
// impersonator stays for prod, the agent goes.
func edgeBesideProd(t *testing.T) (*fixture, UnjoinOptions) {
	f := joined(t)
	o := f.tunnelOptions()
	o.Name = "edge"
	if _, err := f.joinWith(o); err != nil {
		t.Fatal(err)
	}
	if m := f.guardPolicy().Spec.MatchConditions[0].Expression; !strings.Contains(m, `"deployments"`) {
		t.Fatalf("the guard does not cover the agent: %s", m)
	}
	uo := f.unjoinOptions(true)
	uo.Name = "edge"
	return f, uo
}

// Dry runs of that unjoin by someone else: a client dry run sends nothing,
// a server dry run tries the takeover and leaves the deletes the guard as
// it is would refuse unsent.
func TestUnjoinDryRunsOfAnotherUserWhereTheGuardStays(t *testing.T) {
	for _, mode := range []DryRun{DryRunClient, DryRunServer} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			f, uo := edgeBesideProd(t)
			before := f.guardPolicy()
			f.joinAs("bob")
			f.clearActions()
			dryRuns, wet := f.answerDryRuns()
			uo.DryRun = mode
			changes, err := Unjoin(context.Background(), uo)
			if err != nil {
				t.Fatal(err)
			}
			if len(*wet) > 0 {
				t.Errorf("writes without dryRun=All: %q", *wet)
			}
			got := strings.Join(changeStrings(changes), "\n")
			want := []string{"corrected ValidatingAdmissionPolicy " + GuardName + " (dry run): it now guards what stays", "deleted Deployment switchboard-system/switchboard-agent (dry run)\n"}
			if mode == DryRunServer {
				want = []string{"corrected ValidatingAdmissionPolicy " + GuardName + " (server dry run): it now guards what stays",
					"deleted Deployment switchboard-system/switchboard-agent (server dry run)" + notSentGuarded}
				if !slices.Contains(*dryRuns, "patch validatingadmissionpolicies") || slices.Contains(*dryRuns, "delete deployments") {
					t.Errorf("dry runs sent %q, want the guard's takeover and not the agent's delete", *dryRuns)
				}
			} else if len(*dryRuns) > 0 {
				t.Errorf("a client dry run sent %q", *dryRuns)
			}
			for _, w := range want {
				if !strings.Contains(got, w) {
					t.Errorf("changes lack %q:\n%s", w, got)
				}
			}
			if after := f.guardPolicy(); after.Spec.Validations[0].Expression != before.Spec.Validations[0].Expression {
				t.Errorf("a dry run changed the guard: %s", after.Spec.Validations[0].Expression)
			}
		})
	}
}

// An unjoin that deletes the guard with everything else needs no answer
// to who the user is.
func TestUnjoinNeedsNoSelfSubjectReviewToDeleteTheGuard(t *testing.T) {
	f := joined(t)
	f.member.PrependReactor("create", "selfsubjectreviews", failWith(apierrors.NewForbidden(authenticationResource("selfsubjectreviews"), "", errors.New("no"))))
	changes, err := Unjoin(context.Background(), f.unjoinOptions(true))
	if err != nil {
		t.Fatal(err)
	}
	if got := changeStrings(changes); len(got) != 9 || got[3] != "deleted ValidatingAdmissionPolicy "+GuardName {
		t.Errorf("unjoin: %q", got)
	}
}

// A server dry run leaves unsent only what the guard as found covers: a
// guard narrowed to the impersonator's objects lets the agent's through.
func TestGuardCoversWhatItMatches(t *testing.T) {
	labels := map[string]string{ManagedByLabel: ManagedByValue}
	d := declaration{name: testName, agent: &agentDeclaration{}}
	all := objects(d)
	var impersonator []object
	for _, obj := range all {
		if obj.where == inMember && !obj.agent {
			impersonator = append(impersonator, obj)
		}
	}
	var policy admissionregistrationv1.ValidatingAdmissionPolicy
	if err := convert(guardObjects(&guardDeclaration{joiner: "bob"}, impersonator, labels)[0].config, &policy); err != nil {
		t.Fatal(err)
	}
	for _, obj := range all {
		if obj.where != inMember {
			continue
		}
		if got := guardCovers(&policy, obj); got == obj.agent {
			t.Errorf("the impersonator's guard covers %s %s: %v", obj.kind(), ptr.Deref(obj.config.GetName(), obj.resource().Resource), got)
		}
	}
	byName := object{where: inMember, config: corev1ac.Secret(TokenSecretPrefix+"abcde", Namespace)}
	if !guardCovers(&policy, byName) {
		t.Error("the guard does not cover a token Secret by its name")
	}
}
