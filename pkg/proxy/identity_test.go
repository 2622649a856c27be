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
	"crypto/x509"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/switchboard-io/switchboard/pkg/apis/cluster/v1alpha1"
	"github.com/switchboard-io/switchboard/test/testcerts"
)

// alice is the caller of the tests that are not about the caller.
var alice = &user.DefaultInfo{Name: "alice", UID: "uid-alice", Groups: []string{"dev", user.AllAuthenticated}}

// aliceAtTheMember is what the member must see for alice, besides Authorization.
func aliceAtTheMember() http.Header {
	return http.Header{
		"Impersonate-User":  {"alice"},
		"Impersonate-Uid":   {"uid-alice"},
		"Impersonate-Group": {"dev"},
	}
}

func withToken(h http.Header, token string) http.Header {
	h = h.Clone()
	h["Authorization"] = []string{"Bearer " + token}
	return h
}

func TestCallerIsImpersonated(t *testing.T) {
	cases := []struct {
		name   string
		caller *user.DefaultInfo
		// want is what the member must see, besides switchboard's Authorization.
		want http.Header
	}{
		{
			name:   "user and system:authenticated only",
			caller: &user.DefaultInfo{Name: "carol", Groups: []string{user.AllAuthenticated}},
			want:   http.Header{"Impersonate-User": {"carol"}},
		},
		{
			name:   "user without groups",
			caller: &user.DefaultInfo{Name: "dave"},
			want:   http.Header{"Impersonate-User": {"dave"}},
		},
		{
			name: "UID, groups in order, extras with / and % in their keys",
			caller: &user.DefaultInfo{
				Name:   "bob@example.com",
				UID:    "5f0c2a9e-1d7b-4c3e-9a41-0f6f0b6ad1e2",
				Groups: []string{"dev", user.AllAuthenticated, "ops"},
				Extra: map[string][]string{
					"example.com/scopes": {"read", "write"},
					"acme.io/quota%":     {"100%"},
					"reason":             {"on call, paged"},
				},
			},
			want: http.Header{
				"Impersonate-User":                       {"bob@example.com"},
				"Impersonate-Uid":                        {"5f0c2a9e-1d7b-4c3e-9a41-0f6f0b6ad1e2"},
				"Impersonate-Group":                      {"dev", "ops"},
				"Impersonate-Extra-Example.com%2fscopes": {"read", "write"},
				"Impersonate-Extra-Acme.io%2fquota%25":   {"100%"},
				"Impersonate-Extra-Reason":               {"on call, paged"},
			},
		},
		{
			name: "service account with a group of its own",
			caller: &user.DefaultInfo{
				Name:   "system:serviceaccount:team-a:builder",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:team-a", "builders", user.AllAuthenticated},
			},
			want: http.Header{
				"Impersonate-User":  {"system:serviceaccount:team-a:builder"},
				"Impersonate-Group": {"system:serviceaccounts", "system:serviceaccounts:team-a", "builders"},
			},
		},
		{
			name: "service account",
			caller: &user.DefaultInfo{
				Name:   "system:serviceaccount:team-a:builder",
				UID:    "0d4b7c52-7a57-4b53-a3a8-6a5f3cd20c10",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:team-a", user.AllAuthenticated},
				Extra: map[string][]string{
					"authentication.kubernetes.io/pod-name":      {"builder-0"},
					"authentication.kubernetes.io/credential-id": {"JTI=7e1c"},
				},
			},
			// Without its groups: a member gives an impersonated service
			// account named with no group exactly these.
			want: http.Header{
				"Impersonate-User": {"system:serviceaccount:team-a:builder"},
				"Impersonate-Uid":  {"0d4b7c52-7a57-4b53-a3a8-6a5f3cd20c10"},
				"Impersonate-Extra-Authentication.kubernetes.io%2fpod-Name":      {"builder-0"},
				"Impersonate-Extra-Authentication.kubernetes.io%2fcredential-Id": {"JTI=7e1c"},
			},
		},
	}
	for _, tc := range cases {
		for _, m := range roundTripModes {
			t.Run(tc.name+"/"+string(m), func(t *testing.T) {
				mem := newMember(t, nil)
				f := newFixture(t)
				f.addMember(t, testCluster, mem, "")
				fe := f.newFrontend(t, testCluster, tc.caller, nil)

				fe.roundTrip(t, testCluster, m, nil)

				seen := mem.only(t)
				checkIdentity(t, seen, withToken(tc.want, testToken))
				wantExtras := map[string][]string{}
				for k, v := range tc.caller.Extra {
					wantExtras[k] = v
				}
				if got := decodedExtras(t, seen.Header); !reflect.DeepEqual(got, wantExtras) {
					t.Errorf("extras as the member decodes them = %v, want %v", got, wantExtras)
				}
			})
		}
	}
}

func TestClientCertificateCredential(t *testing.T) {
	clientCA, err := testcerts.NewCA("member client CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := clientCA.ClientPair("switchboard-proxy", "switchboard")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)

	for _, m := range roundTripModes {
		t.Run(string(m), func(t *testing.T) {
			mem := newMember(t, nil, withClientCAs(pool))
			f := newFixture(t)
			f.putSecret(t, newSecret(secretName(testCluster), map[string][]byte{
				v1alpha1.SecretKeyClientCert: pair.CertPEM,
				v1alpha1.SecretKeyClientKey:  pair.KeyPEM,
				v1alpha1.SecretKeyCABundle:   mem.caPEM(),
			}))
			f.putCluster(t, newCluster(testCluster, mem.srv.URL))
			// An Authorization from the caller must not survive either.
			fe := f.newFrontend(t, testCluster, alice, nil)

			fe.roundTrip(t, testCluster, m, http.Header{"Authorization": {"Bearer caller-token"}})

			seen := mem.only(t)
			if seen.ClientCN != "switchboard-proxy" {
				t.Errorf("client certificate CN at the member = %q, want switchboard-proxy", seen.ClientCN)
			}
			// No Authorization at all: exactly the impersonation headers.
			checkIdentity(t, seen, aliceAtTheMember())
		})
	}
}

// inboundCase is identity a caller tries to smuggle in: headers set on the
// hub request in process (so exactly these map keys), and a Connection
// header naming headers for a hop to drop.
type inboundCase struct {
	name       string
	set        func(http.Header)
	connection string
}

var inboundCases = []inboundCase{
	{name: "Authorization", set: func(h http.Header) { h.Set("Authorization", "Bearer caller-token") }},
	{name: "authorization, not canonicalized", set: func(h http.Header) { h["authorization"] = []string{"Bearer raw-caller-token"} }},
	{name: "IMPERSONATE-USER, not canonicalized", set: func(h http.Header) { h["IMPERSONATE-USER"] = []string{"root"} }},
	{name: "Impersonate-Group with several values", set: func(h http.Header) {
		h["Impersonate-Group"] = []string{"system:masters", "admins"}
	}},
	{name: "Impersonate-Extra-Foo", set: func(h http.Header) { h.Set("Impersonate-Extra-Foo", "bar") }},
	{name: "impersonate-extra-scopes, not canonicalized", set: func(h http.Header) { h["impersonate-extra-scopes"] = []string{"*"} }},
	{name: "Impersonate-Uid", set: func(h http.Header) { h.Set("Impersonate-Uid", "0") }},
	{name: "X-Remote-User and x-remote-group", set: func(h http.Header) {
		h.Set("X-Remote-User", "root")
		h["x-remote-group"] = []string{"system:masters"}
		h.Set("X-Remote-Extra-Scopes", "*")
	}},
	{name: "Proxy-Authorization", set: func(h http.Header) { h.Set("Proxy-Authorization", "Basic cm9vdDpyb290") }},
	{name: "Connection: Impersonate-User", connection: "Impersonate-User"},
	{name: "Connection: Impersonate-Group, Authorization", connection: "Impersonate-Group, Authorization"},
	{name: "Connection: Impersonate-Uid, Impersonate-Extra-Example.com%2fscopes", connection: "Impersonate-Uid, Impersonate-Extra-Example.com%2fscopes"},
	{
		name:       "Connection naming the headers it also sends",
		connection: "Impersonate-User, Impersonate-Group",
		set: func(h http.Header) {
			h.Set("Impersonate-User", "root")
			h.Set("Impersonate-Group", "system:masters")
		},
	},
	{name: "everything at once", connection: "Authorization, Impersonate-User", set: func(h http.Header) {
		h.Set("Authorization", "Bearer caller-token")
		h["authorization"] = []string{"Bearer raw-caller-token"}
		h["IMPERSONATE-USER"] = []string{"root"}
		h["Impersonate-Group"] = []string{"system:masters", "admins"}
		h.Set("Impersonate-Uid", "0")
		h.Set("Impersonate-Extra-Foo", "bar")
		h.Set("X-Remote-User", "root")
		h["x-remote-group"] = []string{"system:masters"}
		h.Set("Proxy-Authorization", "Basic cm9vdDpyb290")
	}},
}

// runInboundCase sends tc's request in mode m and checks that the member saw
// alice and nothing of what the caller sent, and no Connection header
// that would let a hop drop the impersonation.
func runInboundCase(t *testing.T, tc inboundCase, m mode) {
	mem := newMember(t, nil)
	f := newFixture(t)
	f.addMember(t, testCluster, mem, "")
	fe := f.newFrontend(t, testCluster, alice, func(req *http.Request) {
		if tc.set != nil {
			tc.set(req.Header)
		}
		if tc.connection != "" {
			conn := tc.connection
			if m == upgradeMode {
				conn = "Upgrade, " + conn
			}
			req.Header.Set("Connection", conn)
		}
	})

	fe.roundTrip(t, testCluster, m, nil)

	seen := mem.only(t)
	checkIdentity(t, seen, withToken(aliceAtTheMember(), testToken))
	tokens := connectionTokens(seen.Header)
	for _, token := range tokens {
		if carriesIdentity(token) {
			t.Errorf("the member got a Connection header naming %q: a hop honouring it would drop the impersonation (Connection %q)", token, tokens)
		}
	}
	if m == upgradeMode && !reflect.DeepEqual(tokens, []string{"Upgrade"}) {
		t.Errorf("Connection at the member = %q, want exactly [Upgrade]", tokens)
	}
}

func TestCallerIdentityHeadersNeverArrive(t *testing.T) {
	for _, tc := range inboundCases {
		for _, m := range roundTripModes {
			t.Run(tc.name+"/"+string(m), func(t *testing.T) {
				runInboundCase(t, tc, m)
			})
		}
	}
}

// A Connection header under a name Go did not canonicalize is just as much a
// Connection header on the wire: the Go transport writes the key as it is,
// and a hop in front of the member that honours it drops the impersonation
// headers, so that the request runs as switchboard itself. The code strips
// identity headers "whatever their case" for exactly this reason, but not
// Connection.
func TestNonCanonicalConnectionHeaderCannotDropImpersonation(t *testing.T) {
	tc := inboundCase{name: "connection, not canonicalized", set: func(h http.Header) {
		h["connection"] = []string{"Impersonate-User, Impersonate-Group, Authorization"}
	}}
	for _, m := range roundTripModes {
		t.Run(string(m), func(t *testing.T) {
			runInboundCase(t, tc, m)
		})
	}
}

func TestNoUserNothingReachesTheMember(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			mem := newMember(t, nil)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			req := newProxyRequest(http.MethodGet, testCluster, execPath, "command=ls", nil, nil)
			if m == upgradeMode {
				markUpgrade(req)
			}

			rec, responder := f.serve(t, testCluster, execPath, req)

			status := statusOf(t, responder.onlyError(t))
			checkStatusMessage(t, status, http.StatusInternalServerError, metav1.StatusReasonInternalError, `cluster "m1"`, "no authenticated user")
			if rec.Code != http.StatusInternalServerError {
				t.Errorf("code = %d, want 500", rec.Code)
			}
			written := decodeStatus(t, rec.Header().Get("Content-Type"), rec.Body.Bytes())
			checkStatusMessage(t, written, http.StatusInternalServerError, metav1.StatusReasonInternalError, `cluster "m1"`)
			if n := len(mem.requests()); n != 0 {
				t.Errorf("the member received %d requests", n)
			}
			if n := mem.newConns.Load(); n != 0 {
				t.Errorf("switchboard opened %d connections to the member", n)
			}
		})
	}
}

// A user whose name or groups header values cannot carry (leading or trailing
// whitespace: HTTP drops it) would arrive at the member as someone else: a
// hub group " system:masters" becomes the member's system:masters. Such a
// caller must be refused with 403: the request is not allowed, and nothing
// is wrong with switchboard.
func TestIdentityHeadersCannotCarryIsRefused(t *testing.T) {
	cases := []struct {
		name   string
		caller *user.DefaultInfo
	}{
		{"group with a leading space", &user.DefaultInfo{Name: "mallory", Groups: []string{" system:masters"}}},
		{"user with a trailing space", &user.DefaultInfo{Name: "admin ", Groups: []string{"dev"}}},
		{"user with a leading tab", &user.DefaultInfo{Name: "\tadmin"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMember(t, nil)
			f := newFixture(t)
			f.addMember(t, testCluster, mem, "")
			req := newProxyRequest(http.MethodGet, testCluster, "/api/v1/secrets", "", nil, tc.caller)

			rec, _ := f.serve(t, testCluster, "/api/v1/secrets", req)

			for _, seen := range mem.requests() {
				t.Errorf("the member received the request as user %q, groups %q (hub user %q, groups %q)",
					seen.Header.Get("Impersonate-User"), seen.Header.Values("Impersonate-Group"), tc.caller.Name, tc.caller.Groups)
			}
			if rec.Code != http.StatusForbidden {
				t.Errorf("code = %d, want 403 (refused)", rec.Code)
			}
		})
	}
}

// The member records a proxied request under switchboard's audit ID for
// it, the hub's: in every mode, and never under one the caller sent.
func TestTheAuditIDReachesTheMember(t *testing.T) {
	for _, tc := range []struct {
		name string
		// id is the request's audit ID in switchboard; "" for none.
		id   string
		want []string
	}{
		{name: "the request's audit ID", id: "5b0e3c9e-hub-audit-id", want: []string{"5b0e3c9e-hub-audit-id"}},
		{name: "none, and the caller's is dropped", id: "", want: nil},
	} {
		for _, m := range roundTripModes {
			t.Run(tc.name+"/"+string(m), func(t *testing.T) {
				mem := newMember(t, nil)
				f := newFixture(t)
				f.addMember(t, testCluster, mem, "")
				fe := f.newFrontend(t, testCluster, alice, func(req *http.Request) {
					if tc.id != "" {
						ctx := audit.WithAuditContext(req.Context())
						audit.WithAuditID(ctx, types.UID(tc.id))
						*req = *req.WithContext(ctx)
					}
				})
				fe.roundTrip(t, testCluster, m, http.Header{"Audit-Id": {"chosen-by-the-caller"}, "audit-id": {"and-another"}})
				seen := mem.only(t)
				var got []string
				for name, values := range seen.Header {
					if strings.EqualFold(name, auditinternal.HeaderAuditID) {
						got = append(got, values...)
					}
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("the member got Audit-ID %q, want %q", got, tc.want)
				}
			})
		}
	}
}
