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

package reach

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/switchboard-io/switchboard/pkg/identity"
)

// BenchmarkIdentityRoundTrip is what switchboard does to a request's
// identity before it leaves, with no policy and with a three-expression
// one (a rule, the user name and the groups), on a caller with a few
// groups and an extra. Compare the two in one run:
//
//	go test ./pkg/reach -run XXX -bench IdentityRoundTrip -count 6 | benchstat -col /policy -
func BenchmarkIdentityRoundTrip(b *testing.B) {
	policy, errs := identity.Compile(&identity.Policy{
		Rules:    []identity.Rule{identity.RefuseHubAdminsRule},
		Username: `"hub:" + user.username`,
		Groups:   `user.groups.map(g, "hub:" + g)`,
	}, field.NewPath("spec", "identity"))
	if len(errs) > 0 {
		b.Fatal(errs.ToAggregate())
	}
	caller := &user.DefaultInfo{
		Name:   "system:serviceaccount:team-a:deployer",
		UID:    "0d4b7c52-7a57-4b53-a3a8-6a5f3cd20c10",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:team-a", user.AllAuthenticated},
		Extra:  map[string][]string{"authentication.kubernetes.io/pod-name": {"deployer-0"}},
	}
	req := httptest.NewRequest(http.MethodGet, "https://member.example/api/v1/namespaces/default", nil)
	req = req.WithContext(request.WithUser(req.Context(), caller))
	for _, tc := range []struct {
		name   string
		policy *identity.Program
	}{{"policy=none", nil}, {"policy=three-expressions", policy}} {
		b.Run(tc.name, func(b *testing.B) {
			rt := &identityRoundTripper{cluster: "m1", token: "sb-token", policy: tc.policy, delegate: &sent{}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
