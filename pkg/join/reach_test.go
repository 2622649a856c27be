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
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func urlError(err error) error {
	return &url.Error{Op: "Get", URL: "https://member.example:6443/api", Err: err}
}

// TestClassify checks join's side of the classification: which errors are
// about reaching the server at all. Which failure each is, reach.Classify
// tells, and its own tests check.
func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Resource: "secrets"}
	cases := []struct {
		name string
		err  error
		want string // "" for not a reachability problem
	}{
		{"nil", nil, ""},
		{"connection refused", urlError(&net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}), "refused"},
		{"bare ECONNREFUSED", syscall.ECONNREFUSED, "refused"},
		{"bare unknown authority", x509.UnknownAuthorityError{}, "tls"},
		{"wrapped deadline", fmt.Errorf("listing: %w", urlError(context.DeadlineExceeded)), "timeout"},
		{"unauthorized", apierrors.NewUnauthorized("invalid bearer token"), "unauthorized"},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("no")), "forbidden"},
		{"wrapped forbidden", fmt.Errorf("creating: %w", apierrors.NewForbidden(gr, "x", errors.New("no"))), "forbidden"},
		{"other transport failure", urlError(errors.New("EOF")), "other"},
		{"conflict", apierrors.NewConflict(gr, "x", errors.New("changed")), ""},
		{"not found", apierrors.NewNotFound(gr, "x"), ""},
		{"internal error", apierrors.NewInternalError(errors.New("etcd")), ""},
		{"plain error", errors.New("something of join's own"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classify("member", memberHost, tc.err)
			if tc.want == "" {
				if got != nil {
					t.Fatalf("classify(%v) = %v, want nil", tc.err, got)
				}
				return
			}
			var unreachable *UnreachableError
			if !errors.As(got, &unreachable) {
				t.Fatalf("classify(%v) = %v (%T), want an *UnreachableError", tc.err, got, got)
			}
			if unreachable.Reason != tc.want || unreachable.Which != "member" || unreachable.Address != memberHost {
				t.Errorf("reason %q which %q address %q, want %q member %s", unreachable.Reason, unreachable.Which, unreachable.Address, tc.want, memberHost)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("%v does not unwrap to %v", got, tc.err)
			}
		})
	}
}

func TestUnreachableErrorMessage(t *testing.T) {
	cases := []struct {
		which, address, reason string
		hint                   string
	}{
		{"member", memberHost, "dns", "its host name does not resolve"},
		{"member", memberHost, "refused", "the connection was refused"},
		{"hub", hubHost, "tls", "the TLS handshake failed"},
		{"hub", hubHost, "timeout", "it did not answer in time"},
		{"member", memberHost, "unauthorized", "(401)"},
		{"hub", hubHost, "forbidden", "(403)"},
		{"hub", hubHost, "other", "the request failed"},
	}
	for _, tc := range cases {
		t.Run(tc.which+" "+tc.reason, func(t *testing.T) {
			err := &UnreachableError{Which: tc.which, Address: tc.address, Reason: tc.reason, Err: errors.New("the cause")}
			msg := err.Error()
			prefix := "the " + tc.which + " API server at " + tc.address + " cannot be used: "
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.hint) || !strings.HasSuffix(msg, ": the cause") {
				t.Errorf("message %q, want %q…%q…the cause", msg, prefix, tc.hint)
			}
		})
	}
}
