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
	"slices"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// Groups a member gives the impersonated user by itself are not sent; all
// others are, in the caller's order.
func TestImpersonationLeavesOutTheGroupsTheMemberGives(t *testing.T) {
	const sa = "system:serviceaccount:team-a:deployer"
	own := []string{"system:serviceaccounts", "system:serviceaccounts:team-a"}
	for _, tc := range []struct {
		name   string
		user   string
		groups []string
		sent   []string
	}{
		{"a service account with its own groups", sa, append(slices.Clone(own), user.AllAuthenticated), nil},
		{"a service account with its own groups, without system:authenticated", sa, own, nil},
		{"a service account with one more group", sa, append(slices.Clone(own), "dev"), append(slices.Clone(own), "dev")},
		{"a service account with another namespace's group", sa, []string{"system:serviceaccounts", "system:serviceaccounts:team-b"},
			[]string{"system:serviceaccounts", "system:serviceaccounts:team-b"}},
		{"a service account with its groups in another order", sa, []string{own[1], own[0]}, []string{own[1], own[0]}},
		{"a service account with one of its groups", sa, own[:1], own[:1]},
		{"a user with a service account's groups", "alice", own, own},
		{"a user", "alice", []string{"dev", user.AllAuthenticated, "ops"}, []string{"dev", "ops"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "https://member.example/api", nil)
			req = req.WithContext(request.WithUser(req.Context(), &user.DefaultInfo{Name: tc.user, Groups: tc.groups}))
			delegate := &sent{}
			if _, err := (&identityRoundTripper{cluster: "m1", token: "t", delegate: delegate}).RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if got := delegate.req.Header.Values("Impersonate-Group"); !slices.Equal(got, tc.sent) {
				t.Errorf("Impersonate-Group %q, want %q", got, tc.sent)
			}
		})
	}
}
