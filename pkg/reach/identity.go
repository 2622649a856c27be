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
	"fmt"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/transport"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/switchboard-io/switchboard/pkg/identity"
)

// identityRoundTripper sends a request to a member as its original caller.
// It runs in the transport, after httputil.ReverseProxy has removed
// hop-by-hop headers (including any a caller named in Connection), so that
// nothing a caller sends can remove or replace what it sets:
//
//  1. every Authorization, Proxy-Authorization, Impersonate-* and X-Remote-*
//     header from the incoming request is dropped, whatever its case;
//  2. the caller from the request context, as the Cluster's identity
//     policy maps it (or refuses it: then nothing is sent), is impersonated
//     with client-go's impersonating round tripper (user, UID, groups,
//     extras), leaving out system:authenticated, which members add
//     themselves;
//  3. switchboard's own bearer token is added, when the member credential is
//     a token (a client certificate is presented by TLS instead);
//  4. before anything leaves, the outgoing identity headers are checked to
//     be exactly the ones set here.
//
// It also sends the request's audit ID as Audit-ID, so that the member's
// audit event can be joined with the hub's and switchboard's.
//
// With no user in the context it refuses to send anything.
type identityRoundTripper struct {
	cluster string
	token   string
	// policy maps the caller to the identity the member sees; nil sends
	// the caller as it is.
	policy   *identity.Program
	delegate http.RoundTripper
}

var _ utilnet.RoundTripperWrapper = &identityRoundTripper{}

func (rt *identityRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	caller, ok := request.UserFrom(req.Context())
	if !ok || caller == nil || caller.GetName() == "" {
		return nil, &IdentityError{Cluster: rt.cluster, Reason: "the request carries no authenticated user"}
	}
	mapped, err := rt.policy.Map(req.Context(), caller)
	if err != nil {
		return nil, &PolicyError{Cluster: rt.cluster, Err: err}
	}
	want := impersonationFor(mapped)
	if err := sendable(want); err != nil {
		return nil, &IdentityError{Cluster: rt.cluster, Reason: err.Error(), Unsendable: true}
	}

	upgrade := httpstream.IsUpgradeRequest(req)
	out := utilnet.CloneRequest(req)
	// Header names in any case become one canonical name each, so that no
	// second spelling of Connection or of an identity header survives.
	out.Header = canonicalHeader(out.Header)
	removeCallerIdentity(out.Header)
	// One audit trail: the member records the request under the audit ID
	// that switchboard recorded it under, which is the hub's (its
	// aggregator sends it, and the generic server's audit filter adopts
	// it). Only that one: never an ID of the caller's choosing.
	out.Header.Del(auditinternal.HeaderAuditID)
	if id, ok := audit.AuditIDFrom(req.Context()); ok && id != "" {
		out.Header.Set(auditinternal.HeaderAuditID, string(id))
	}
	if upgrade {
		// Keep only the upgrade itself in Connection: nothing a caller
		// lists there may make a later hop drop a header set here.
		out.Header.Set("Connection", "Upgrade")
	} else {
		out.Header.Del("Connection")
	}

	var next http.RoundTripper = &identityCheck{cluster: rt.cluster, want: want, token: rt.token, delegate: rt.delegate}
	if rt.token != "" {
		next = transport.NewBearerAuthRoundTripper(rt.token, next)
	}
	return transport.NewImpersonatingRoundTripper(want, next).RoundTrip(out)
}

func (rt *identityRoundTripper) WrappedRoundTripper() http.RoundTripper { return rt.delegate }

// impersonationFor is the impersonation of a caller. It leaves out the
// groups a member gives the impersonated user by itself, each of which
// would cost the member one more authorization check on every request:
// system:authenticated, which every member adds to a user that is not
// anonymous, and a service account's own groups (system:serviceaccounts and
// system:serviceaccounts:<namespace>), which a member gives an impersonated
// service account when no group is named. The member then sees the same
// groups as the caller has.
func impersonationFor(u user.Info) transport.ImpersonationConfig {
	groups := make([]string, 0, len(u.GetGroups()))
	for _, g := range u.GetGroups() {
		if g != user.AllAuthenticated {
			groups = append(groups, g)
		}
	}
	if namespace, _, err := serviceaccount.SplitUsername(u.GetName()); err == nil && slices.Equal(groups, serviceaccount.MakeGroupNames(namespace)) {
		groups = nil
	}
	return transport.ImpersonationConfig{
		UserName: u.GetName(),
		UID:      u.GetUID(),
		Groups:   groups,
		Extra:    u.GetExtra(),
	}
}

// sendable checks that every part of an identity survives as a header
// value: HTTP trims surrounding white space, so a group " system:masters"
// would arrive as system:masters, and control characters do not travel.
func sendable(c transport.ImpersonationConfig) error {
	check := func(what, v string) error {
		if v != strings.Trim(v, " \t") || !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("the caller's %s %q cannot be sent as a header unchanged", what, v)
		}
		return nil
	}
	if err := check("user name", c.UserName); err != nil {
		return err
	}
	if err := check("UID", c.UID); err != nil {
		return err
	}
	for _, g := range c.Groups {
		if err := check("group", g); err != nil {
			return err
		}
	}
	for k, vv := range c.Extra {
		for _, v := range vv {
			if err := check("extra "+k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// canonicalHeader merges the values of every header under its canonical name.
func canonicalHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for name, values := range h {
		key := http.CanonicalHeaderKey(name)
		out[key] = append(out[key], values...)
	}
	return out
}

// identityHeader says whether a header name carries identity, in any case.
func identityHeader(name string) bool {
	lower := strings.ToLower(name)
	return lower == "authorization" || lower == "proxy-authorization" ||
		strings.HasPrefix(lower, "impersonate-") || strings.HasPrefix(lower, "x-remote-")
}

// removeCallerIdentity drops every identity header. It walks the map rather
// than using Del, so that names Go did not canonicalize go too.
func removeCallerIdentity(h http.Header) {
	for name := range h {
		if identityHeader(name) {
			delete(h, name)
		}
	}
}

// identityCheck is the last round tripper before the wire: it refuses to
// send a request whose identity headers are not exactly switchboard's.
type identityCheck struct {
	cluster  string
	want     transport.ImpersonationConfig
	token    string
	delegate http.RoundTripper
}

var _ utilnet.RoundTripperWrapper = &identityCheck{}

func (c *identityCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := c.verify(req.Header); err != nil {
		return nil, err
	}
	return c.delegate.RoundTrip(req)
}

func (c *identityCheck) WrappedRoundTripper() http.RoundTripper { return c.delegate }

func (c *identityCheck) verify(h http.Header) error {
	expected := http.Header{}
	expected.Set(transport.ImpersonateUserHeader, c.want.UserName)
	if c.want.UID != "" {
		expected.Set(transport.ImpersonateUIDHeader, c.want.UID)
	}
	for _, g := range c.want.Groups {
		expected.Add(transport.ImpersonateGroupHeader, g)
	}
	if c.token != "" {
		expected.Set("Authorization", "Bearer "+c.token)
	}
	extras := 0
	for _, vv := range c.want.Extra {
		extras += len(vv)
	}

	seenExtras := 0
	for name, values := range h {
		if !identityHeader(name) {
			continue
		}
		if strings.HasPrefix(strings.ToLower(name), "impersonate-extra-") {
			seenExtras += len(values)
			continue
		}
		if !slices.Equal(values, expected[name]) {
			return &IdentityError{Cluster: c.cluster, Reason: fmt.Sprintf("the outgoing header %s is not the one switchboard set", name)}
		}
		delete(expected, name)
	}
	if len(expected) > 0 || seenExtras != extras {
		return &IdentityError{Cluster: c.cluster, Reason: "the outgoing impersonation headers are incomplete"}
	}
	return nil
}

// PolicyError is a request the Cluster's identity policy refuses (an
// *identity.Refusal): nothing of it is sent.
type PolicyError struct {
	Cluster string
	Err     error
}

func (e *PolicyError) Error() string { return fmt.Sprintf("cluster %q: %v", e.Cluster, e.Err) }
func (e *PolicyError) Unwrap() error { return e.Err }

// IdentityError means switchboard refused to forward a request because it
// could not send it as its caller. Unless Unsendable, it is an internal
// error: it never happens with a correct handler chain.
type IdentityError struct {
	Cluster string
	Reason  string
	// Unsendable means the caller's identity cannot be expressed in
	// headers: the request is refused (403), not an internal failure.
	Unsendable bool
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("refusing to forward the request to cluster %q: %s", e.Cluster, e.Reason)
}
