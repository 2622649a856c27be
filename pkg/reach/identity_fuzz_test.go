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
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/streaming/pkg/httpstream"
)

// FuzzCallerHeaders: whatever headers a caller sends, under whatever names
// and in whatever case, and whoever the caller is, the identity a member
// sees comes from the request's user alone: Impersonate-User, -Uid, -Group
// and -Extra-* exactly as the user has them (less system:authenticated),
// switchboard's own token, and the audit ID switchboard recorded. A user
// that cannot be sent unchanged is refused, and then nothing is sent.
//
// incoming is the caller's headers, one "name: value" a line, put into the
// request as they are (not canonicalized, as a hand-made request may be).
func FuzzCallerHeaders(f *testing.F) {
	f.Add("system:serviceaccount:team-a:deployer", "", "system:serviceaccounts\x00system:serviceaccounts:team-a\x00system:authenticated", "", "", "", "t", "")
	f.Add("system:serviceaccount:team-a:deployer", "", "system:serviceaccounts\x00system:serviceaccounts:team-b", "", "", "", "t", "")
	f.Add("alice", "", "dev\x00system:authenticated", "scopes", "read", "Authorization: Bearer stolen\nimpersonate-user: system:admin\nIMPERSONATE-GROUP: system:masters\nX-Remote-User: root\nConnection: Impersonate-User\nAudit-ID: forged", "sb-token", "hub-audit-id")
	f.Add("bob", "uid-1", "", "k%2F/é", "", "impersonate-extra-scopes: all\nx-remote-extra-a: b\nProxy-Authorization: Basic eA==\naudit-id: forged", "", "")
	f.Add(" system:admin", "", "g", "", "", "Impersonate-Uid: 0", "t", "a")
	f.Add("carol", "\x7f", "", "", "", "", "t", "")
	f.Add("erin", "", "", "", "", "Connection: keep-alive, Upgrade, Impersonate-User\nconnection: close\nUpgrade: SPDY/3.1\nimpersonate-user: root", "t", "")
	f.Add("dave", "", "a\x00 b", "x", "v\r\nImpersonate-User: root", "Impersonate-User: root", "", "")
	f.Fuzz(func(t *testing.T, name, uid, groups, extraKey, extraValue, incoming, token, auditID string) {
		caller := &user.DefaultInfo{Name: name, UID: uid}
		if groups != "" {
			caller.Groups = strings.Split(groups, "\x00")
		}
		if extraKey != "" || extraValue != "" {
			caller.Extra = map[string][]string{extraKey: {extraValue}}
		}
		req := httptest.NewRequest(http.MethodGet, "https://member.example/api", nil)
		for _, line := range strings.Split(incoming, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				req.Header[k] = append(req.Header[k], strings.TrimSpace(v))
			}
		}
		ctx := request.WithUser(req.Context(), caller)
		if auditID != "" {
			ctx = audit.WithAuditContext(ctx)
			audit.WithAuditID(ctx, types.UID(auditID))
		}
		req = req.WithContext(ctx)
		upgrade := httpstream.IsUpgradeRequest(req)
		delegate := &sent{}
		rt := &identityRoundTripper{cluster: "m1", token: token, delegate: delegate}

		_, err := rt.RoundTrip(req)

		unsendable := changedAsHeader(name, uid, extraValue)
		for _, g := range caller.Groups {
			unsendable = unsendable || (g != user.AllAuthenticated && changedAsHeader(g))
		}
		if err != nil {
			var idErr *IdentityError
			if !errors.As(err, &idErr) {
				t.Fatalf("refused with %T %v, want an *IdentityError", err, err)
			}
			if name != "" && (!idErr.Unsendable || !unsendable) {
				t.Fatalf("refused a user that can be sent: %v", err)
			}
			if delegate.req != nil {
				t.Fatal("a refused request was sent")
			}
			return
		}
		if name == "" || unsendable {
			t.Fatalf("sent a user that cannot be sent unchanged: %+v", caller)
		}

		want := http.Header{"Impersonate-User": {name}}
		if uid != "" {
			want["Impersonate-Uid"] = []string{uid}
		}
		for _, g := range caller.Groups {
			if g != user.AllAuthenticated {
				want["Impersonate-Group"] = append(want["Impersonate-Group"], g)
			}
		}
		// A service account with exactly its own groups is sent without
		// them: the member gives them to it.
		if ns, _, err := serviceaccount.SplitUsername(name); err == nil &&
			slices.Equal(want["Impersonate-Group"], []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}) {
			delete(want, "Impersonate-Group")
		}
		if token != "" {
			want["Authorization"] = []string{"Bearer " + token}
		}
		h := delegate.req.Header
		extras := 0
		for key, values := range h {
			lower := strings.ToLower(key)
			switch {
			case strings.HasPrefix(lower, "impersonate-extra-"):
				decoded, err := url.PathUnescape(key[len("Impersonate-Extra-"):])
				if err != nil || !strings.EqualFold(decoded, extraKey) || !slices.Equal(values, []string{extraValue}) {
					t.Fatalf("extra header %s: %q (decoded %q, %v), want %q: %q", key, values, decoded, err, extraKey, extraValue)
				}
				extras++
			case identityHeader(key):
				if !slices.Equal(values, want[key]) {
					t.Fatalf("%s: %q, want %q", key, values, want[key])
				}
				delete(want, key)
			case strings.EqualFold(key, auditinternal.HeaderAuditID):
				if auditID == "" || key != http.CanonicalHeaderKey(auditinternal.HeaderAuditID) || !slices.Equal(values, []string{auditID}) {
					t.Fatalf("%s: %q, want the recorded audit ID %q", key, values, auditID)
				}
			case lower == "connection":
				// Only the upgrade itself, for an upgrade: nothing a caller
				// lists there may make a later hop drop a header.
				if !upgrade || key != "Connection" || !slices.Equal(values, []string{"Upgrade"}) {
					t.Fatalf("a caller's Connection header went on: %s: %q", key, values)
				}
				upgrade = false
			}
		}
		if upgrade {
			t.Fatalf("an upgrade went out without Connection: Upgrade: %v", h)
		}
		if len(want) > 0 {
			t.Fatalf("headers %v lack %v", h, want)
		}
		if wantExtras := len(caller.Extra); extras != wantExtras {
			t.Fatalf("%d extra headers, want %d", extras, wantExtras)
		}
	})
}

// changedAsHeader says whether any of values would not arrive as it is
// sent: HTTP trims surrounding spaces and tabs, and control characters
// other than tab do not travel.
func changedAsHeader(values ...string) bool {
	for _, v := range values {
		if v != strings.Trim(v, " \t") {
			return true
		}
		for _, c := range []byte(v) {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return true
			}
		}
	}
	return false
}
