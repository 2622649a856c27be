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
	"errors"
	"fmt"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/switchboard-io/switchboard/pkg/reach"
)

// UnreachableError says which address could not be used, and why, in one of
// the words an administrator looks for: DNS, refused, TLS, timeout or
// unauthorized.
type UnreachableError struct {
	// Which is "member" or "hub".
	Which   string
	Address string
	// Reason is a reach.Failure (dns, refused, tls, timeout, other), or
	// unauthorized or forbidden.
	Reason string
	Err    error
}

func (e *UnreachableError) Error() string {
	hint := map[string]string{
		"unauthorized": "it rejected the credentials of the kubeconfig (401)",
		"forbidden":    "the kubeconfig's identity may not do this (403)",
	}[e.Reason]
	if hint == "" {
		hint = reach.Failure(e.Reason).Hint()
	}
	return fmt.Sprintf("the %s API server at %s cannot be used: %s: %v", e.Which, e.Address, hint, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// classify turns a failed request into an UnreachableError, or returns nil
// when the error is an answer from the server other than 401 or 403.
func classify(which, address string, err error) error {
	if err == nil {
		return nil
	}
	var reason string
	switch {
	case apierrors.IsUnauthorized(err):
		reason = "unauthorized"
	case apierrors.IsForbidden(err):
		reason = "forbidden"
	default:
		failure := reach.Classify(err)
		var urlErr *url.Error
		if failure == reach.Other && !errors.As(err, &urlErr) {
			// An answer from the server, or a problem of join's own: not
			// about reaching the server.
			return nil
		}
		reason = string(failure)
	}
	return &UnreachableError{Which: which, Address: address, Reason: reason, Err: err}
}
