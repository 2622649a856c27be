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
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/switchboard-io/switchboard/pkg/identity"
)

// sent records the last request a round tripper was given.
type sent struct{ req *http.Request }

func (s *sent) RoundTrip(req *http.Request) (*http.Response, error) {
	s.req = req
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
}

// FuzzPolicyHeaders: whatever the hub caller's name, groups and extras,
// a request that leaves switchboard under a prefix policy carries exactly
// the identity the policy gives: its user, its groups, the one extra, and
// switchboard's token. Anything else is refused before it is sent.
func FuzzPolicyHeaders(f *testing.F) {
	f.Add("alice", "dev", "example.com/scopes", "read")
	f.Add("a'+'system:masters", " system:masters", "Impersonate-User", "x\r\nImpersonate-Group: system:masters")
	f.Add("système", "a,b", "k%2F", "\x00")
	f.Add("", "dev", "", "")
	policy, errs := identity.Compile(&identity.Policy{
		Rules:    []identity.Rule{{Expression: "!('system:masters' in user.groups)"}},
		Username: "'hub:' + user.username",
		Groups:   "user.groups.map(g, 'hub:' + g)",
		Extra:    []identity.Extra{{Key: "hub.example.com/extra", ValueExpression: "user.extra.exists(k, true) ? user.extra[user.extra.map(k, k)[0]] : []"}},
	}, field.NewPath("spec", "identity"))
	if len(errs) > 0 {
		f.Fatal(errs.ToAggregate())
	}
	f.Fuzz(func(t *testing.T, name, group, extraKey, extraValue string) {
		caller := &user.DefaultInfo{Name: name, Groups: []string{group}, Extra: map[string][]string{extraKey: {extraValue}}}
		delegate := &sent{}
		rt := &identityRoundTripper{cluster: "m1", token: "sb-token", policy: policy, delegate: delegate}
		req := httptest.NewRequest(http.MethodGet, "https://member.example/api", nil)
		req.Header.Set("Impersonate-User", "system:admin")
		req.Header.Set("Authorization", "Bearer caller")
		req = req.WithContext(request.WithUser(req.Context(), caller))

		_, err := rt.RoundTrip(req)
		if err != nil {
			var policyErr *PolicyError
			var idErr *IdentityError
			// No user at all is refused too, as an internal error: the
			// handler chain never lets such a request through.
			refused := errors.As(err, &policyErr) || errors.As(err, &idErr) && (idErr.Unsendable || name == "")
			if !refused {
				t.Fatalf("refused with %T %v, want a policy refusal or an unsendable identity", err, err)
			}
			if delegate.req != nil {
				t.Fatal("a refused request was sent")
			}
			if group == "system:masters" && !errors.As(err, &policyErr) {
				t.Fatalf("system:masters was refused by %v, not by the policy", err)
			}
			return
		}
		h := delegate.req.Header
		if group == "system:masters" {
			t.Fatal("a caller in system:masters passed the rule that refuses it")
		}
		want := map[string][]string{
			"Impersonate-User":  {"hub:" + name},
			"Impersonate-Group": {"hub:" + group},
			"Authorization":     {"Bearer sb-token"},
		}
		if group == user.AllAuthenticated {
			want["Impersonate-Group"] = []string{"hub:" + user.AllAuthenticated}
		}
		extras := 0
		for key, values := range h {
			lower := strings.ToLower(key)
			switch {
			case strings.HasPrefix(lower, "impersonate-extra-"):
				decoded, err := url.PathUnescape(key[len("Impersonate-Extra-"):])
				if err != nil || !strings.EqualFold(decoded, "hub.example.com/extra") || !slices.Equal(values, []string{extraValue}) {
					t.Fatalf("extra header %s: %q (decoded %q, %v)", key, values, decoded, err)
				}
				extras++
			case identityHeader(key):
				if !slices.Equal(values, want[key]) {
					t.Fatalf("%s: %q, want %q", key, values, want[key])
				}
				delete(want, key)
			}
		}
		if len(want) > 0 || extras != 1 {
			t.Fatalf("headers %v lack %v, or have %d extras", h, want, extras)
		}
	})
}
