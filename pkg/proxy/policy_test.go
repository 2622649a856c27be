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

package proxy

import (
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/component-base/metrics/testutil"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/clusterlabel"
	listers "github.com/switchboard-io/switchboard/pkg/generated/listers/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/pkg/identity"
)

// addMemberWithPolicy is addMember with an identity policy on the Cluster.
func (f *fixture) addMemberWithPolicy(t *testing.T, name string, m *member, policy *v1alpha1.IdentityPolicy) {
	t.Helper()
	f.putSecret(t, newSecret(secretName(name), tokenData(m, testToken)))
	cl := newCluster(name, m.srv.URL)
	cl.Spec.Identity = policy
	f.putCluster(t, cl)
}

var hubPrefix = &v1alpha1.IdentityPolicy{
	Username: "'hub:' + user.username",
	Groups:   "user.groups.map(g, 'hub:' + g)",
	Extra:    []v1alpha1.IdentityExtra{{Key: "hub.example.com/uid", ValueExpression: "user.uid"}},
}

// The member sees the identity the policy maps the caller to, in every
// mode: plain requests, watches and upgrades.
func TestThePolicyMapsTheCaller(t *testing.T) {
	caller := &user.DefaultInfo{Name: "alice", UID: "uid-alice", Groups: []string{"dev", user.AllAuthenticated},
		Extra: map[string][]string{"scopes": {"all"}}}
	for _, m := range roundTripModes {
		t.Run(string(m), func(t *testing.T) {
			mem := newMember(t, nil)
			f := newFixture(t)
			f.addMemberWithPolicy(t, testCluster, mem, hubPrefix)
			fe := f.newFrontend(t, testCluster, caller, nil)

			fe.roundTrip(t, testCluster, m, nil)

			// The policy says nothing of the UID: the caller's.
			checkIdentity(t, mem.only(t), withToken(http.Header{
				"Impersonate-User":                        {"hub:alice"},
				"Impersonate-Uid":                         {"uid-alice"},
				"Impersonate-Group":                       {"hub:dev", "hub:system:authenticated"},
				"Impersonate-Extra-Hub.example.com%2fuid": {"uid-alice"},
			}, testToken))
		})
	}
}

// A caller a rule refuses gets 403, naming the Cluster and the rule, and
// nothing reaches the member: no request, no connection.
func TestThePolicyRefusesACaller(t *testing.T) {
	noMasters := &v1alpha1.IdentityPolicy{Rules: []v1alpha1.IdentityRule{
		{Expression: "!('system:masters' in user.groups)", Message: "hub administrators are not administrators here"},
	}}
	admin := &user.DefaultInfo{Name: "admin", Groups: []string{"system:masters", user.AllAuthenticated}}
	RegisterMetrics()
	before, _ := testutil.GetCounterMetricValue(policyRefusalsTotal.WithLabelValues(testCluster))
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			mem := newMember(t, nil)
			f := newFixture(t)
			clusterlabel.Use(listers.NewClusterLister(f.clusters))
			t.Cleanup(func() { clusterlabel.Use(nil) })
			f.addMemberWithPolicy(t, testCluster, mem, noMasters)
			req := newProxyRequest(http.MethodGet, testCluster, execPath, "command=ls", nil, admin)
			if m == upgradeMode {
				markUpgrade(req)
			}

			rec, responder := f.serve(t, testCluster, execPath, req)

			status := statusOf(t, responder.onlyError(t))
			checkStatusMessage(t, status, http.StatusForbidden, metav1.StatusReasonForbidden,
				`cluster "m1"`, "its identity policy refuses the caller: rule 0 (!('system:masters' in user.groups)): hub administrators are not administrators here")
			if rec.Code != http.StatusForbidden {
				t.Errorf("code = %d, want 403", rec.Code)
			}
			if n := len(mem.requests()); n != 0 {
				t.Errorf("the member received %d requests", n)
			}
			if n := mem.newConns.Load(); n != 0 {
				t.Errorf("switchboard opened %d connections to the member", n)
			}
		})
	}
	if got, err := testutil.GetCounterMetricValue(policyRefusalsTotal.WithLabelValues(testCluster)); err != nil || got-before != 2 {
		t.Errorf("switchboard_proxy_identity_policy_refusals_total{cluster=%q} went from %v to %v (%v), want 2 more", testCluster, before, got, err)
	}
}

// A policy that no longer compiles (stored by an API server that knew
// more) refuses every request: it is never left out.
func TestAPolicyThatDoesNotCompileRefusesEverything(t *testing.T) {
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMemberWithPolicy(t, testCluster, mem, &v1alpha1.IdentityPolicy{Username: "user.nosuchfield"})
	req := newProxyRequest(http.MethodGet, testCluster, "/api", "", nil, alice)

	rec, responder := f.serve(t, testCluster, "/api", req)

	status := statusOf(t, responder.onlyError(t))
	checkStatusMessage(t, status, http.StatusForbidden, metav1.StatusReasonForbidden, `cluster "m1"`,
		"its identity policy refuses every caller: it does not compile", "spec.identity.username")
	if rec.Code != http.StatusForbidden {
		t.Errorf("code = %d, want 403", rec.Code)
	}
	if n := len(mem.requests()); n != 0 {
		t.Errorf("the member received %d requests", n)
	}
}

// A policy is compiled when the Cluster's transport is built, once, and
// never per request.
func TestThePolicyIsNotCompiledPerRequest(t *testing.T) {
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMemberWithPolicy(t, testCluster, mem, hubPrefix)
	fe := f.newFrontend(t, testCluster, alice, nil)
	before := identity.Compilations()
	for range 20 {
		for _, m := range roundTripModes {
			fe.roundTrip(t, testCluster, m, nil)
		}
	}
	if n := identity.Compilations() - before; n != 1 {
		t.Errorf("60 requests compiled the policy %d times, want once", n)
	}
}
